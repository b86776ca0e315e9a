package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestMetricsRemoteWrite: a master started with --metrics-remote-write-url
// sends what it scrapes to a receiver on loopback, with the bearer token
// of --metrics-remote-write-bearer-token-file and its external labels
// (skiff_master=<node>, and --metrics-external-labels); while the receiver
// answers 503 the master retries, and the series arrive once it is back.
func TestMetricsRemoteWrite(t *testing.T) {
	var (
		mu      sync.Mutex
		down    = true
		seen    = map[string]bool{} // job/skiff_master/cluster of the up series received
		badTok  []string
		refused int
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if a := r.Header.Get("Authorization"); a != "Bearer rw-token" {
			badTok = append(badTok, a)
		}
		if down {
			refused++
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		raw, err := snappy.Decode(nil, body)
		var req prompb.WriteRequest
		if err == nil {
			err = req.Unmarshal(raw)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, ts := range req.Timeseries {
			l := map[string]string{}
			for _, p := range ts.Labels {
				l[p.Name] = p.Value
			}
			if l["__name__"] == "up" {
				seen[l["job"]+"/"+l["skiff_master"]+"/"+l["cluster"]] = true
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("rw-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1", Args: []string{"--metrics-scrape-interval", "1s",
		"--metrics-remote-write-url", "http://" + ln.Addr().String() + "/api/v1/write",
		"--metrics-remote-write-bearer-token-file", tokenFile, "--metrics-external-labels", "cluster=edge-1"}})
	m.Start()
	m.WaitReady(60 * time.Second)
	// The master's own series are scraped, sent, refused and retried.
	testutil.WaitFor(t, 60*time.Second, "requests retried while the receiver is down", func() error {
		mu.Lock()
		defer mu.Unlock()
		if refused < 3 {
			return fmt.Errorf("%d requests refused so far", refused)
		}
		return nil
	})
	mu.Lock()
	down = false
	mu.Unlock()
	testutil.WaitFor(t, 60*time.Second, "the master's series at the receiver", func() error {
		mu.Lock()
		defer mu.Unlock()
		if !seen["skiff-master/m1/edge-1"] {
			return fmt.Errorf("no up{job=skiff-master,skiff_master=m1,cluster=edge-1}; seen %v", seen)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(badTok) > 0 {
		t.Fatalf("requests without the token: %q", badTok)
	}
}
