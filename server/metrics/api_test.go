package metrics

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

func testAPIServer(t *testing.T, opts APIOptions) (*httptest.Server, time.Time) {
	t.Helper()
	store := openTestStore(t, t.TempDir(), StoreOptions{})
	t.Cleanup(func() { store.Close() })
	now := time.Now().Truncate(time.Second)
	for _, pod := range []string{"a", "b", "c"} {
		lset := labels.FromStrings(labels.MetricName, "pod_cpu_usage_seconds_total", "namespace", "default", "pod", pod, "job", "resource")
		var values []float64
		for i := range 61 {
			values = append(values, float64(i))
		}
		appendSamples(t, store, lset, now.Add(-10*time.Minute), 10*time.Second, values...)
	}
	srv := httptest.NewServer(http.StripPrefix("/prometheus", NewAPI(store, opts)))
	t.Cleanup(srv.Close)
	return srv, now
}

type apiAnswer struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

func get(t *testing.T, srv *httptest.Server, path string, q url.Values) (int, apiAnswer) {
	t.Helper()
	resp, err := http.Get(srv.URL + path + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a apiAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return resp.StatusCode, a
}

// The Prometheus Go client, as Grafana, reads the API at .../prometheus.
func TestAPIPrometheusClient(t *testing.T) {
	srv, now := testAPIServer(t, APIOptions{})
	c, err := promapi.NewClient(promapi.Config{Address: srv.URL + "/prometheus"})
	if err != nil {
		t.Fatal(err)
	}
	api := promv1.NewAPI(c)
	ctx := context.Background()

	v, _, _, err := api.QueryRange(ctx, `sum by (pod) (rate(pod_cpu_usage_seconds_total[1m]))`,
		promv1.Range{Start: now.Add(-5 * time.Minute), End: now, Step: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(model.Matrix)
	if !ok || len(m) != 3 || len(m[0].Values) != 11 {
		t.Fatalf("query_range = %v", v)
	}
	if got := float64(m[0].Values[5].Value); got < 0.09 || got > 0.11 {
		t.Fatalf("rate = %v, want 0.1", got)
	}
	v, _, _, err = api.Query(ctx, `pod_cpu_usage_seconds_total{pod="b"}`, now)
	if err != nil {
		t.Fatal(err)
	}
	if vec, ok := v.(model.Vector); !ok || len(vec) != 1 || vec[0].Value != 60 {
		t.Fatalf("query = %v", v)
	}
	series, _, _, err := api.Series(ctx, []string{`pod_cpu_usage_seconds_total{pod=~"a|c"}`}, now.Add(-time.Hour), now)
	if err != nil || len(series) != 2 {
		t.Fatalf("series = %v, %v", series, err)
	}
	names, _, _, err := api.LabelNames(ctx, nil, time.Time{}, time.Time{})
	if err != nil || joinNames(names) != "__name__,job,namespace,pod" {
		t.Fatalf("labels = %v, %v", names, err)
	}
	values, _, _, err := api.LabelValues(ctx, "pod", nil, time.Time{}, time.Time{})
	if err != nil || len(values) != 3 || values[0] != "a" {
		t.Fatalf("label values = %v, %v", values, err)
	}
	bi, err := api.Buildinfo(ctx)
	if err != nil || bi.Version != Version {
		t.Fatalf("buildinfo = %+v, %v", bi, err)
	}
}

// Bad input: a malformed query gets 400 with the parser's message; one
// over the sample bound 422, one over the timeout 503, each with
// Prometheus' error JSON.
func TestAPIBounds(t *testing.T) {
	srv, now := testAPIServer(t, APIOptions{MaxSamples: 20})
	ts := rfc3339(now)

	code, a := get(t, srv, "/prometheus/api/v1/query", url.Values{"query": {`sum(rate(x[1m]`}, "time": {ts}})
	if code != http.StatusBadRequest || a.Status != "error" || a.ErrorType != "bad_data" || !strings.Contains(a.Error, "unclosed left parenthesis") {
		t.Fatalf("malformed: %d %+v", code, a)
	}
	code, a = get(t, srv, "/prometheus/api/v1/query", url.Values{"query": {`pod_cpu_usage_seconds_total[10m]`}, "time": {ts}})
	if code != http.StatusUnprocessableEntity || a.ErrorType != "execution" || !strings.Contains(a.Error, "too many samples") {
		t.Fatalf("over max samples: %d %+v", code, a)
	}
	code, a = get(t, srv, "/prometheus/api/v1/query_range", url.Values{"query": {`pod_cpu_usage_seconds_total`},
		"start": {"0"}, "end": {ts}, "step": {"1"}})
	if code != http.StatusBadRequest || !strings.Contains(a.Error, "11,000 points") {
		t.Fatalf("too many points: %d %+v", code, a)
	}
	code, a = get(t, srv, "/prometheus/api/v1/query", url.Values{"query": {`count(pod_cpu_usage_seconds_total)`}, "time": {ts}, "timeout": {"0.000000001"}})
	if code != http.StatusServiceUnavailable || a.ErrorType != "timeout" {
		t.Fatalf("timeout: %d %+v", code, a)
	}
	code, a = get(t, srv, "/prometheus/api/v1/series", url.Values{"match[]": {`{pod=`}})
	if code != http.StatusBadRequest || a.ErrorType != "bad_data" {
		t.Fatalf("bad selector: %d %+v", code, a)
	}
	code, _ = get(t, srv, "/prometheus/api/v1/nothing", nil)
	if code != http.StatusNotFound {
		t.Fatalf("unknown endpoint: %d", code)
	}
	// Still answering after the refusals.
	code, a = get(t, srv, "/prometheus/api/v1/query", url.Values{"query": {`count(pod_cpu_usage_seconds_total)`}, "time": {ts}})
	if code != http.StatusOK || a.Status != "success" {
		t.Fatalf("after: %d %+v", code, a)
	}
}

func rfc3339(t time.Time) string { return t.Format(time.RFC3339) }

func joinNames(ns model.LabelNames) string {
	var out []string
	for _, n := range ns {
		out = append(out, string(n))
	}
	return strings.Join(out, ",")
}

// Evaluations beyond the concurrency bound wait for a slot, and one that
// waits past its timeout is answered 503.
func TestAPIConcurrencyBound(t *testing.T) {
	store := openTestStore(t, t.TempDir(), StoreOptions{})
	defer store.Close()
	a := NewAPI(store, APIOptions{MaxConcurrent: 1})
	a.slots <- struct{}{} // the only slot is taken
	srv := httptest.NewServer(a)
	defer srv.Close()
	code, ans := get(t, srv, "/api/v1/query", url.Values{"query": {"1"}, "timeout": {"0.2"}})
	if code != http.StatusServiceUnavailable || ans.ErrorType != "timeout" {
		t.Fatalf("no slot: %d %+v", code, ans)
	}
	<-a.slots
	if code, ans := get(t, srv, "/api/v1/query", url.Values{"query": {"1"}}); code != http.StatusOK {
		t.Fatalf("with a slot: %d %+v", code, ans)
	}
}
