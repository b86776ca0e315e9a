package ingress

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skiff-io/skiff/nettools/proxy"
)

// BenchmarkServeHTTP: the controller's cost per request, in process: a
// keep-alive client, the controller, a keep-alive backend on loopback.
func BenchmarkServeHTTP(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer backend.Close()
	ap := netip.MustParseAddrPort(backend.Listener.Addr().String())
	c, err := New(Config{Client: fake.NewClientset(), NodeName: "n"})
	if err != nil {
		b.Fatal(err)
	}
	tbl := BuildTable([]*networkingv1.Ingress{ing("web", time.Hour, "", map[string][]p{"web.example.com": {{"/", networkingv1.PathTypePrefix, "web"}}})})
	c.state.Store(&snapshot{table: tbl, ports: byService([]proxy.ServicePort{{Namespace: "default", Service: "web",
		Protocol: "TCP", Port: 80, Endpoints: []proxy.Endpoint{{IP: ap.Addr(), Port: ap.Port()}}}})})
	front := httptest.NewServer(c)
	defer front.Close()
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DialContext: (&net.Dialer{}).DialContext}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", front.URL+"/", nil)
			req.Host = "web.example.com"
			resp, err := cl.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
