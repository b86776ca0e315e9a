package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

const cadvisorText = `# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",pod="web-1",namespace="default"} 12.5
container_cpu_usage_seconds_total{container="side",pod="web-1",namespace="default"} 1.5
# HELP container_memory_working_set_bytes Current working set in bytes.
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",pod="web-1",namespace="default"} 6.7108864e+07
# HELP http_request_duration_seconds A histogram.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1",job="inner"} 3
http_request_duration_seconds_bucket{le="+Inf",job="inner"} 4
http_request_duration_seconds_sum{job="inner"} 0.7
http_request_duration_seconds_count{job="inner"} 4
`

func targetFor(t *testing.T, srv *httptest.Server, job, path string) Target {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Job: job, Instance: u.Host, Node: "n1", URL: srv.URL + path, Client: srv.Client()}
}

// A target serving the Prometheus text format is scraped into the store
// with job, instance and node labels and up 1; a kubelet that serves no
// such endpoint yet (404) and an unreachable one are recorded as up 0 and
// do not stop the round; a scrape over the sample limit is dropped whole.
func TestScraperTargets(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics/cadvisor", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, cadvisorText)
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		for i := range 20 {
			fmt.Fprintf(w, "many_series{i=\"%d\"} 1\n", i)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	store := openTestStore(t, t.TempDir(), StoreOptions{})
	defer store.Close()
	cadvisor := targetFor(t, srv, JobCadvisor, "/metrics/cadvisor")
	missing := targetFor(t, srv, JobResource, "/metrics/resource") // 404
	tooMany := targetFor(t, srv, JobKubelet, "/metrics")
	unreachable := Target{Job: JobMaster, Instance: strings.TrimPrefix(deadURL, "http://"), Node: "m1", URL: deadURL + "/metrics"}
	sc := NewScraper(store, ScraperOptions{
		Targets:     func() []Target { return []Target{cadvisor, missing, tooMany, unreachable} },
		Interval:    time.Second,
		SampleLimit: 10,
		Concurrency: 2,
		Logger:      slog.New(slog.DiscardHandler),
	})
	now := time.Now()
	sc.ScrapeOnce(context.Background(), now)

	api := NewAPI(store, APIOptions{})
	up := instant(t, api, `up`, now)
	want := map[string]float64{
		fmt.Sprintf(`{__name__="up", instance=%q, job="cadvisor", node="n1"}`, cadvisor.Instance):        1,
		fmt.Sprintf(`{__name__="up", instance=%q, job="resource", node="n1"}`, missing.Instance):         0,
		fmt.Sprintf(`{__name__="up", instance=%q, job="kubelet", node="n1"}`, tooMany.Instance):          0,
		fmt.Sprintf(`{__name__="up", instance=%q, job="skiff-master", node="m1"}`, unreachable.Instance): 0,
	}
	if fmt.Sprint(up) != fmt.Sprint(want) {
		t.Fatalf("up = %v\nwant %v", up, want)
	}
	got := instant(t, api, `container_memory_working_set_bytes{pod="web-1",namespace="default",container="app",job="cadvisor",node="n1"}`, now)
	if len(got) != 1 {
		t.Fatalf("working set: %v", got)
	}
	// A label of the target's own (job) is kept as exported_job.
	if got := instant(t, api, `http_request_duration_seconds_count{exported_job="inner",job="cadvisor"}`, now); len(got) != 1 {
		t.Fatalf("histogram count: %v", got)
	}
	if got := instant(t, api, `count(many_series)`, now); len(got) != 0 {
		t.Fatalf("samples of a scrape over the limit were kept: %v", got)
	}
	if got := instant(t, api, `scrape_samples_scraped{job="cadvisor"}`, now); len(got) != 1 || fmt.Sprint(got) == "" {
		t.Fatalf("scrape_samples_scraped: %v", got)
	}
	for _, v := range instant(t, api, `scrape_samples_scraped{job="cadvisor"}`, now) {
		if v != 7 {
			t.Fatalf("scrape_samples_scraped = %v, want 7", v)
		}
	}
	if got := instant(t, api, `scrape_duration_seconds`, now); len(got) != 4 {
		t.Fatalf("scrape_duration_seconds: %v", got)
	}
}

// A target slower than the timeout fails (up 0) within the timeout, and
// Run stops when its context ends.
func TestScraperTimeoutAndStop(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	store := openTestStore(t, t.TempDir(), StoreOptions{})
	defer store.Close()
	slow := targetFor(t, srv, JobKubelet, "/metrics")
	sc := NewScraper(store, ScraperOptions{
		Targets: func() []Target { return []Target{slow} }, Interval: time.Second, Timeout: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() { sc.Run(ctx); close(done) }()
	api := NewAPI(store, APIOptions{})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if got := instant(t, api, `up`, time.Now()); len(got) == 1 {
			for _, v := range got {
				if v != 0 {
					t.Fatalf("up = %v for a target that times out", v)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no up sample for the slow target")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a 200ms timeout took %v", d)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}
