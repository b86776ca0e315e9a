package ingress

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skiff-io/skiff/nettools/proxy"
)

// inProcess starts a keep-alive backend answering "ok" and the controller
// in front of it (web.example.com, Prefix /), on loopback, and returns
// the controller's URL and a keep-alive client.
func inProcess(tb testing.TB) (string, *http.Client) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	tb.Cleanup(backend.Close)
	ap := netip.MustParseAddrPort(backend.Listener.Addr().String())
	c, err := New(Config{Client: fake.NewClientset(), NodeName: "n"})
	if err != nil {
		tb.Fatal(err)
	}
	tbl := BuildTable([]*networkingv1.Ingress{ing("web", time.Hour, "", map[string][]p{"web.example.com": {{"/", networkingv1.PathTypePrefix, "web"}}})})
	c.state.Store(&snapshot{table: tbl, ports: byService([]proxy.ServicePort{{Namespace: "default", Service: "web",
		Protocol: "TCP", Port: 80, Endpoints: []proxy.Endpoint{{IP: ap.Addr(), Port: ap.Port()}}}})})
	front := httptest.NewServer(c)
	tb.Cleanup(front.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 8, DialContext: (&net.Dialer{}).DialContext}
	tb.Cleanup(tr.CloseIdleConnections)
	return front.URL, &http.Client{Transport: tr}
}

func get(cl *http.Client, url string) error {
	req, _ := http.NewRequest("GET", url+"/", nil)
	req.Host = "web.example.com"
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return &statusError{resp.StatusCode}
	}
	return nil
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }

// BenchmarkServeHTTP: the controller's cost per request, in process: a
// keep-alive client, the controller, a keep-alive backend on loopback.
func BenchmarkServeHTTP(b *testing.B) {
	url, cl := inProcess(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(cl, url); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestServeHTTPBytes: a proxied request allocates no copy buffer of its
// own (ReverseProxy's 32 KiB one per response, unless it has a
// BufferPool): the whole process, client and backend included, stays
// under 32 KiB per request (~12.5 KiB with the pool, ~26 KiB under the
// race detector, which drops pooled items; ~45 KiB without a pool).
func TestServeHTTPBytes(t *testing.T) {
	url, cl := inProcess(t)
	if err := get(cl, url); err != nil { // connections and pools warm
		t.Fatal(err)
	}
	const n = 500
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		if err := get(cl, url); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per >= 32<<10 {
		t.Errorf("%d bytes allocated per proxied request, want < 32 KiB", per)
	}
}
