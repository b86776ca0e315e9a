package metrics

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// receiver is a remote-write receiver on 127.0.0.1: it decodes snappy
// protobuf WriteRequests (remote-write 1.0) and keeps their series; while
// down it answers 503, which the sender must retry.
type receiver struct {
	mu      sync.Mutex
	series  map[string][]prompb.Sample // by labels, as text
	auth    []string
	down    atomic.Bool
	refused atomic.Int64
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.auth = append(rc.auth, r.Header.Get("Authorization"))
	rc.mu.Unlock()
	if rc.down.Load() {
		rc.refused.Add(1)
		http.Error(w, "receiver down", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, ts := range req.Timeseries {
		b := labels.NewScratchBuilder(len(ts.Labels))
		for _, l := range ts.Labels {
			b.Add(l.Name, l.Value)
		}
		b.Sort()
		key := b.Labels().String()
		rc.series[key] = append(rc.series[key], ts.Samples...)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) samples(key string) []prompb.Sample {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]prompb.Sample(nil), rc.series[key]...)
}

// TestRemoteWrite: what the store appends reaches a receiver with the
// external labels and the bearer token; samples appended while the
// receiver answers 503 are retried and arrive once it is back.
func TestRemoteWrite(t *testing.T) {
	rc := &receiver{series: map[string][]prompb.Sample{}}
	rc.down.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rc}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := openTestStore(t, filepath.Join(dir, "metrics"), StoreOptions{})
	t.Cleanup(func() { store.Close() })
	reg := prometheus.NewRegistry()
	err = store.EnableRemoteWrite(RemoteWriteOptions{
		URLs: []string{"http://" + ln.Addr().String() + "/api/v1/write"}, BearerTokenFile: tokenFile,
		ExternalLabels: map[string]string{"skiff_master": "m1", "cluster": "edge"},
		MinBackoff:     10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, BatchSendDeadline: 100 * time.Millisecond,
	}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Samples go in every 50 ms, as a scraper's would.
	lset := labels.FromStrings(labels.MetricName, "up", "job", "kubelet", "instance", "10.0.0.1:10250", "node", "n1")
	ctx, cancel := context.WithCancel(context.Background())
	var appended sync.WaitGroup
	appended.Add(1)
	var n atomic.Int64
	go func() {
		defer appended.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			app := store.Appender(ctx)
			_, err := app.Append(0, lset, time.Now().UnixMilli(), float64(n.Add(1)))
			if err == nil {
				err = app.Commit()
			}
			if err != nil && ctx.Err() == nil {
				t.Errorf("append: %v", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { cancel(); appended.Wait() })

	// The outage: the sender retries.
	waitFor(t, 20*time.Second, "requests refused while the receiver is down", func() error {
		if rc.refused.Load() < 3 {
			return fmt.Errorf("%d requests refused", rc.refused.Load())
		}
		return nil
	})
	// Values up to this one were appended during the outage.
	lastDuringOutage := float64(n.Load())
	rc.down.Store(false)
	want := `{__name__="up", cluster="edge", instance="10.0.0.1:10250", job="kubelet", node="n1", skiff_master="m1"}`
	waitFor(t, 30*time.Second, "the series at the receiver", func() error {
		got := rc.samples(want)
		if len(got) == 0 {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			return fmt.Errorf("no %s; received %v", want, keys(rc.series))
		}
		// The samples appended during the outage were kept and sent.
		if got[0].Value >= lastDuringOutage {
			return fmt.Errorf("first sample received %v, after the outage's last %v (those of the outage lost?)", got[0].Value, lastDuringOutage)
		}
		if len(got) < 5 {
			return fmt.Errorf("%d samples so far", len(got))
		}
		return nil
	})
	rc.mu.Lock()
	for _, a := range rc.auth {
		if a != "Bearer s3cret" {
			t.Errorf("Authorization %q, want the token file's", a)
		}
	}
	rc.mu.Unlock()
	// The queue's own metrics are in the registry given.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "prometheus_remote_storage_samples_retried_total") {
		t.Errorf("no remote storage metrics in %v", names)
	}
}

func TestRemoteWriteOptions(t *testing.T) {
	for _, o := range []RemoteWriteOptions{
		{},
		{URLs: []string{"ftp://x/y"}},
		{URLs: []string{"http://x/y"}, BearerTokenFile: "/t", Username: "u"},
	} {
		if _, err := o.config(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	conf, err := RemoteWriteOptions{URLs: []string{"https://a/w", "https://b/w"}, Username: "u", PasswordFile: "/p", CAFile: "/ca",
		ExternalLabels: map[string]string{"skiff_master": "m2"}}.config()
	if err != nil {
		t.Fatal(err)
	}
	if len(conf.RemoteWriteConfigs) != 2 || conf.RemoteWriteConfigs[1].HTTPClientConfig.BasicAuth.Username != "u" ||
		conf.RemoteWriteConfigs[0].HTTPClientConfig.TLSConfig.CAFile != "/ca" || conf.GlobalConfig.ExternalLabels.Get("skiff_master") != "m2" {
		t.Fatalf("config %+v", conf)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
