package logstore

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/client/logrecord"
)

// LogsQL pipes that read other records (union, join, subqueries, stream
// context) find nothing outside the caller's scope.
func TestAPIQueryScopeEscapes(t *testing.T) {
	f := newAPIFixture(t)
	base := time.Now().Add(-time.Minute)
	var all []logrecord.Record
	all = append(all, recs("n1/a/c/0", 1, 3, base, podFields("a", "pa"))...)
	all = append(all, recs("n1/b/c/0", 1, 3, base, podFields("b", "pb"))...)
	all = append(all, recs("n1/agent", 1, 2, base, map[string]string{"kind": logrecord.KindAgent, "node": "n1"})...)
	if code, body := f.do("POST", "/logs/v1/ingest", "admin", ndjson(all), nil); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	f.store.storage.DebugFlush()
	for _, q := range []string{
		`* | union (namespace:="b")`,
		`* | union (*)`,
		`* | join by (container) (namespace:="b" | fields container, pod as other_pod)`,
		`pod:in(namespace:="b" | fields pod)`,
		`_msg:in(* | fields _msg)`,
		`* | stream_context before 10 after 10`,
		`options(ignore_global_time_filter=true) *`,
		`* | stats by (namespace, pod) count() hits`,
		`* | facets`,
		`* | field_names`,
		`* | field_values namespace`,
		`* | uniq by (namespace)`,
	} {
		code, body := f.do("GET", "/logs/v1/query?"+url.Values{"query": {q}}.Encode(), "view:a", nil, nil)
		t.Logf("%s: %d, %d bytes", q, code, len(body))
		if code == http.StatusBadRequest {
			continue // not accepted at all: nothing leaks
		}
		if code != 200 {
			t.Errorf("%s: %d %s", q, code, body)
			continue
		}
		for _, bad := range []string{`"b"`, `"pb"`, "n1/b/", `"agent"`, "n1/agent", "of n1/b"} {
			if strings.Contains(body, bad) {
				t.Errorf("view:a, %s: the answer holds %s: %.400s", q, bad, body)
			}
		}
	}
}

// A node's credentials ingest only the kinds a node produces: not
// events (the masters make those from the API's Events), nor kinds the
// store does not know (only cluster-wide readers would see them).
func TestAPINodeIngestKinds(t *testing.T) {
	f := newAPIFixture(t)
	base := time.Now()
	for _, kind := range []string{logrecord.KindEvent, "audit", ""} {
		fields := map[string]string{"node": "n1", "namespace": "a"}
		if kind != "" {
			fields["kind"] = kind
		}
		code, body := f.do("POST", "/logs/v1/ingest", "node:n1", ndjson(recs("n1/forged", 1, 1, base, fields)), nil)
		if code != 403 || status(t, body).Reason != metav1.StatusReasonForbidden {
			t.Errorf("node posting kind %q: %d %s", kind, code, body)
		}
	}
	for i, kind := range []string{logrecord.KindContainer, logrecord.KindAgent, logrecord.KindServer} {
		fields := map[string]string{"node": "n1", "kind": kind, "namespace": "a"}
		code, body := f.do("POST", "/logs/v1/ingest", "node:n1", ndjson(recs("n1/ok/"+kind, int64(i+1), int64(i+1), base, fields)), nil)
		if code != 200 {
			t.Errorf("node posting kind %q: %d %s", kind, code, body)
		}
	}
	// Cluster credentials (masters, admins) still post events.
	ev := map[string]string{"kind": logrecord.KindEvent, "namespace": "a"}
	if code, body := f.do("POST", "/logs/v1/ingest", "admin", ndjson(recs("event/u1", 1, 1, base, ev)), nil); code != 200 {
		t.Errorf("admin posting an event: %d %s", code, body)
	}
}

// One user holds at most MaxTailsPerUser tails at once; the next gets
// 429 until one ends. Another user is not affected.
func TestAPITailsPerUser(t *testing.T) {
	f := newAPIFixture(t)
	open := func(user string) (*http.Response, context.CancelFunc) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/logs/v1/tail?namespace=a", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-User", user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); resp.Body.Close() })
		return resp, cancel
	}
	var cancels []context.CancelFunc
	for i := 0; i < MaxTailsPerUser; i++ {
		resp, cancel := open("view:a")
		if resp.StatusCode != 200 {
			t.Fatalf("tail %d: %d", i+1, resp.StatusCode)
		}
		cancels = append(cancels, cancel)
	}
	resp, _ := open("view:a")
	if resp.StatusCode != 429 {
		t.Fatalf("tail %d of one user: %d, want 429", MaxTailsPerUser+1, resp.StatusCode)
	}
	var st metav1.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 429 || st.Reason != metav1.StatusReasonTooManyRequests {
		t.Fatalf("tail %d of one user: %d %+v %v", MaxTailsPerUser+1, resp.StatusCode, st, err)
	}
	if resp, _ := open("admin"); resp.StatusCode != 200 {
		t.Fatalf("another user's tail: %d", resp.StatusCode)
	}
	// Once one ends, the user may open another.
	cancels[0]()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, cancel := open("view:a")
		if resp.StatusCode == 200 {
			break
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("after one tail ended: still %d", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
