package apiserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// Watches whose memory does not grow with the list they start from, and
// that end when their client takes nothing (issue 15).

// fillConfigMaps creates n ConfigMaps cm-00000... of size bytes of data
// in namespace ns, and returns the list's resourceVersion.
func (e *env) fillConfigMaps(ns string, n, size int) {
	e.t.Helper()
	payload := strings.Repeat("x", size)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				_, err := e.cs.CoreV1().ConfigMaps(ns).Create(e.ctx, &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%05d", i), Labels: map[string]string{"i": fmt.Sprint(i)}},
					Data:       map[string]string{"payload": payload},
				}, metav1.CreateOptions{})
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		e.t.Fatal(err)
	}
}

// smallBufferClient is an HTTP/2 client that buffers at most 64 KiB of a
// stream it is not read: the server blocks on flow control, as with a
// client that does not read its watches.
func (e *env) smallBufferClient(streams int) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   e.srv.HTTP.Client().Transport.(*http.Transport).TLSClientConfig.Clone(),
		ForceAttemptHTTP2: true,
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream:     64 << 10,
			MaxReceiveBufferPerConnection: (streams + 4) * (64 << 10),
		},
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// openWatch opens a watch and returns its response; cancel ends it.
func (e *env) openWatch(hc *http.Client, token, path string) (*http.Response, context.CancelFunc) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.HTTP.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cancel(); resp.Body.Close() })
	return resp, cancel
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestWatchOfLargeListHoldsNoCopy: 60 watches that start from a list of
// 8 MB and whose client stops reading after the first event hold a small,
// fixed amount of memory each (the server blocked on flow control
// mid-list), not a copy of the list: the initial events are written from
// the shared state. The same initial events, read to the end, are
// complete and correct: an ADDED event for every object, as a GET returns
// it, then the BOOKMARK that ends them.
func TestWatchOfLargeListHoldsNoCopy(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	e.createNamespace("big")
	const (
		n    = 1000
		size = 8 << 10
		nw   = 60
	)
	e.fillConfigMaps("big", n, size)
	list, err := e.cs.CoreV1().ConfigMaps("big").List(e.ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != n {
		t.Fatalf("list: %d items, %v", len(list.Items), err)
	}
	path := "/api/v1/namespaces/big/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"

	hc := e.smallBufferClient(nw)
	before := heapInUse()
	var wg sync.WaitGroup
	errs := make(chan error, nw)
	for i := 0; i < nw; i++ {
		resp, _ := e.openWatch(hc, apiservertest.Token, path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("watch %d: %d", i, resp.StatusCode)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The list has started; then the client reads no more.
			if line, err := bufio.NewReader(resp.Body).ReadBytes('\n'); err != nil || !strings.Contains(string(line), `"ADDED"`) {
				errs <- fmt.Errorf("watch %d: first event %.100q %v", i, line, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the servers' writes block
	after := heapInUse()
	per := int64(after-before) / nw
	t.Logf("%d watches of an %d MB list blocked mid-list: %d kB each (client buffers included)", nw, n*size>>20, per>>10)
	if per > n*size/16 {
		t.Fatalf("each watch holds %d kB: a copy of the %d kB list?", per>>10, n*size>>10)
	}

	// The initial events, complete: read with an ordinary client.
	want := map[string]corev1.ConfigMap{}
	for _, cm := range list.Items {
		want[cm.Name] = cm
	}
	for _, p := range []string{path, "/api/v1/namespaces/big/configmaps?watch=true"} {
		resp, cancel := e.openWatch(e.srv.HTTP.Client(), apiservertest.Token, p)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<22)
		for i := 0; i < n; i++ {
			if !sc.Scan() {
				t.Fatalf("%s: %d events, then %v", p, i, sc.Err())
			}
			var ev struct {
				Type   string           `json:"type"`
				Object corev1.ConfigMap `json:"object"`
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatal(err)
			}
			got, exp := ev.Object, want[fmt.Sprintf("cm-%05d", i)]
			exp.Kind, exp.APIVersion = "ConfigMap", "v1"
			if ev.Type != "ADDED" || got.Name != exp.Name || got.ResourceVersion != exp.ResourceVersion || got.UID != exp.UID ||
				got.Labels["i"] != exp.Labels["i"] || got.Data["payload"] != exp.Data["payload"] || got.Kind != "ConfigMap" || got.APIVersion != "v1" ||
				!got.CreationTimestamp.Equal(&exp.CreationTimestamp) {
				t.Fatalf("%s: event %d: %s %s/%s rv %s, want ADDED of %s rv %s", p, i, ev.Type, got.Namespace, got.Name, got.ResourceVersion, exp.Name, exp.ResourceVersion)
			}
		}
		if strings.Contains(p, "sendInitialEvents") {
			if !sc.Scan() {
				t.Fatal("no bookmark")
			}
			var bm struct {
				Type   string `json:"type"`
				Object struct {
					Metadata metav1.ObjectMeta `json:"metadata"`
				} `json:"object"`
			}
			if err := json.Unmarshal(sc.Bytes(), &bm); err != nil || bm.Type != "BOOKMARK" ||
				bm.Object.Metadata.Annotations[metav1.InitialEventsAnnotationKey] != "true" || bm.Object.Metadata.ResourceVersion != list.ResourceVersion {
				t.Fatalf("after the initial events: %.200s", sc.Bytes())
			}
		}
		cancel()
	}
}

// TestWatchStallEnds: a watch whose client takes none of its initial events for
// WatchStallTimeout is ended, which frees its place under the per-user
// watch limit; a watch that is merely idle (nothing to send) is not.
func TestWatchStallEnds(t *testing.T) {
	e := newEnv(t, apiservertest.Options{User: alice, WatchStallTimeout: 300 * time.Millisecond, MaxWatchesPerUser: 2})
	e.createNamespace("big")
	e.fillConfigMaps("big", 400, 8<<10)

	// An idle watch, open throughout.
	idle, _ := e.openWatch(e.srv.HTTP.Client(), apiservertest.Token, "/api/v1/namespaces/default/configmaps?watch=true")
	if idle.StatusCode != http.StatusOK {
		t.Fatalf("idle watch: %d", idle.StatusCode)
	}

	hc := e.smallBufferClient(2)
	stuck, _ := e.openWatch(hc, apiservertest.Token, "/api/v1/namespaces/big/configmaps?watch=true")
	if stuck.StatusCode != http.StatusOK {
		t.Fatalf("watch: %d", stuck.StatusCode)
	}
	// At the limit.
	resp, _ := e.openWatch(hc, apiservertest.Token, "/api/v1/namespaces/big/configmaps?watch=true")
	b, _ := io.ReadAll(resp.Body)
	rawResponse{code: resp.StatusCode, header: resp.Header, body: b}.tooMany(t)
	start := time.Now()
	waitFor(t, "the stuck watch to end", func() bool {
		resp, cancel := e.openWatch(e.srv.HTTP.Client(), apiservertest.Token, "/api/v1/namespaces/default/configmaps?watch=true")
		defer cancel()
		return resp.StatusCode == http.StatusOK
	})
	t.Logf("the stuck watch ended after %s", time.Since(start))
	if _, err := io.Copy(io.Discard, stuck.Body); err == nil {
		t.Fatal("the stuck watch's stream ended cleanly")
	}

	// The idle watch, well past the stall timeout, still delivers.
	time.Sleep(time.Second)
	if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "late"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(idle.Body).ReadBytes('\n')
	if err != nil || !strings.Contains(string(line), `"name":"late"`) {
		t.Fatalf("idle watch after the stall timeout: %.200q %v", line, err)
	}
}
