package logstore

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/client/logrecord"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// testAccess: the X-User header names the caller: "node:NAME" (a node),
// "admin", or "view:NS" (get pods/log and events in NS only).
type testAccess struct{}

func (testAccess) Ingest(r *http.Request) (string, error) {
	u := r.Header.Get("X-User")
	if node, ok := strings.CutPrefix(u, "node:"); ok {
		return node, nil
	}
	if u == "admin" {
		return "", nil
	}
	return "", apierrors.NewForbidden(schema.GroupResource{}, "", fmt.Errorf("no"))
}

func (testAccess) Read(r *http.Request, namespace string) (Scope, error) {
	u := r.Header.Get("X-User")
	if u == "admin" {
		return Scope{AllPodLogs: true, AllEvents: true, Nodes: true, User: u}, nil
	}
	ns, ok := strings.CutPrefix(u, "view:")
	if !ok || (namespace != "" && namespace != ns) {
		return Scope{}, nil
	}
	return Scope{PodLogs: []string{ns}, Events: []string{ns}, User: u}, nil
}

type apiFixture struct {
	t     *testing.T
	store *Store
	srv   *httptest.Server
}

func newAPIFixture(t *testing.T) *apiFixture {
	s := openTest(t, t.TempDir())
	srv := httptest.NewServer(NewAPI(s, testAccess{}, 0, nil))
	t.Cleanup(func() { srv.Close(); s.Close() })
	return &apiFixture{t: t, store: s, srv: srv}
}

func (f *apiFixture) do(method, path, user string, body []byte, hdr map[string]string) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("X-User", user)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func ndjson(rs []logrecord.Record) []byte {
	var b bytes.Buffer
	for i := range rs {
		b.Write(mustJSON(&rs[i]))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func status(t *testing.T, body string) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Kind != "Status" {
		t.Fatalf("not a Status: %s (%v)", body, err)
	}
	return st
}

func TestAPIIngestLimitsAndBadInput(t *testing.T) {
	f := newAPIFixture(t)
	base := time.Now()
	good := ndjson(recs("n1/p/c/0", 1, 3, base, podFields("a", "p")))

	code, body := f.do("POST", "/logs/v1/ingest", "node:n1", good, nil)
	if code != 200 || body != "{\"accepted\":3,\"duplicates\":0}\n" {
		t.Fatalf("ingest: %d %s", code, body)
	}
	code, body = f.do("POST", "/logs/v1/ingest", "node:n1", good, nil)
	if code != 200 || body != "{\"accepted\":0,\"duplicates\":3}\n" {
		t.Fatalf("re-sent: %d %s", code, body)
	}
	// gzip
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(ndjson(recs("n1/p/c/0", 4, 5, base, podFields("a", "p"))))
	zw.Close()
	code, body = f.do("POST", "/logs/v1/ingest", "node:n1", gz.Bytes(), map[string]string{"Content-Encoding": "gzip"})
	if code != 200 || !strings.Contains(body, `"accepted":2`) {
		t.Fatalf("gzip: %d %s", code, body)
	}
	// A node may not post another node's records.
	other := podFields("a", "p")
	other["node"] = "n2"
	code, body = f.do("POST", "/logs/v1/ingest", "node:n1", ndjson(recs("n2/p/c/0", 1, 1, base, other)), nil)
	if code != 403 || status(t, body).Reason != metav1.StatusReasonForbidden {
		t.Fatalf("other node's record: %d %s", code, body)
	}
	code, body = f.do("POST", "/logs/v1/ingest", "nobody", good, nil)
	if code != 403 {
		t.Fatalf("no ingest right: %d %s", code, body)
	}
	// Malformed JSON names the line.
	code, body = f.do("POST", "/logs/v1/ingest", "admin", append(good, []byte("{\"source\":\n")...), nil)
	if code != 400 || !strings.Contains(status(t, body).Message, "line 4") {
		t.Fatalf("malformed line 4: %d %s", code, body)
	}
	code, body = f.do("POST", "/logs/v1/ingest", "admin", []byte(`{"source":"x","offset":1,"msg":"no time"}`), nil)
	if code != 400 || !strings.Contains(body, "time is required") {
		t.Fatalf("no time: %d %s", code, body)
	}
	// Over 8 MiB: 413, also without a Content-Length, and decompressed.
	big := bytes.Repeat([]byte("x"), maxBodyBytes+1)
	code, body = f.do("POST", "/logs/v1/ingest", "admin", big, nil)
	if code != 413 || status(t, body).Reason != metav1.StatusReasonRequestEntityTooLarge {
		t.Fatalf("9 MiB: %d %.200s", code, body)
	}
	gz.Reset()
	zw = gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("\n"), maxDecompressedBytes+1))
	zw.Close()
	code, _ = f.do("POST", "/logs/v1/ingest", "admin", gz.Bytes(), map[string]string{"Content-Encoding": "gzip"})
	if code != 413 {
		t.Fatalf("gzip bomb: %d", code)
	}
	// Nothing of the refused requests was stored.
	f.store.storage.DebugFlush()
	wantRange(t, offsets(t, f.store, "n1/p/c/0"), 1, 5)
}

func TestAPIQueryScopes(t *testing.T) {
	f := newAPIFixture(t)
	base := time.Now().Add(-time.Minute)
	var all []logrecord.Record
	all = append(all, recs("n1/a/c/0", 1, 5, base, podFields("a", "pa"))...)
	all = append(all, recs("n1/b/c/0", 1, 5, base, podFields("b", "pb"))...)
	all = append(all, recs("n1/agent", 1, 2, base, map[string]string{"kind": logrecord.KindAgent, "node": "n1"})...)
	all = append(all, logrecord.Record{Source: "event/u1", Offset: 7, Time: base, Msg: "pulled", Fields: map[string]string{"kind": logrecord.KindEvent, "namespace": "a", "reason": "Pulled"}})
	if code, body := f.do("POST", "/logs/v1/ingest", "admin", ndjson(all), nil); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	f.store.storage.DebugFlush()
	query := func(user string, v url.Values) (int, []Result, string) {
		code, body := f.do("GET", "/logs/v1/query?"+v.Encode(), user, nil, nil)
		var out []Result
		if code == 200 {
			dec := json.NewDecoder(strings.NewReader(body))
			for dec.More() {
				var r Result
				if err := dec.Decode(&r); err != nil {
					t.Fatal(err)
				}
				out = append(out, r)
			}
		}
		return code, out, body
	}
	code, res, body := query("admin", url.Values{})
	if code != 200 || len(res) != 13 {
		t.Fatalf("admin sees everything: %d %d %s", code, len(res), body)
	}
	code, res, body = query("view:a", url.Values{})
	if code != 200 || len(res) != 6 {
		t.Fatalf("view:a, no namespace: %d %d %s", code, len(res), body)
	}
	for _, r := range res {
		if r.Fields["namespace"] != "a" {
			t.Fatalf("view:a sees %+v", r)
		}
	}
	code, res, _ = query("view:a", url.Values{"namespace": {"a"}, "pod": {"pa"}, "limit": {"2"}})
	if code != 200 || len(res) != 2 || res[0].Fields["offset"] != "5" {
		t.Fatalf("view:a, pod pa, limit 2: %d %+v", code, res)
	}
	code, _, body = query("view:a", url.Values{"namespace": {"b"}})
	if code != 403 || status(t, body).Reason != metav1.StatusReasonForbidden {
		t.Fatalf("view:a asking for b: %d %s", code, body)
	}
	// A query for other namespaces' records through LogsQL finds none.
	code, res, _ = query("view:a", url.Values{"query": {"namespace:b or kind:agent"}})
	if code != 200 || len(res) != 0 {
		t.Fatalf("view:a, LogsQL for b: %d %+v", code, res)
	}
	code, _, body = query("nobody", url.Values{})
	if code != 403 {
		t.Fatalf("no rights: %d %s", code, body)
	}
	code, _, body = query("admin", url.Values{"query": {"foo:(("}})
	if st := status(t, body); code != 400 || st.Reason != metav1.StatusReasonBadRequest || !strings.Contains(st.Message, "LogsQL") {
		t.Fatalf("bad LogsQL: %d %s", code, body)
	}
	code, _, body = query("admin", url.Values{"since": {"soon"}})
	if code != 400 {
		t.Fatalf("bad since: %d %s", code, body)
	}
	code, res, _ = query("admin", url.Values{"query": {"pulled"}, "since": {"1h"}})
	if code != 200 || len(res) != 1 || res[0].Fields["reason"] != "Pulled" {
		t.Fatalf("event by word: %d %+v", code, res)
	}
	code, res, _ = query("admin", url.Values{"end": {base.Add(-time.Hour).Format(time.RFC3339)}})
	if code != 200 || len(res) != 0 {
		t.Fatalf("end before every record: %d %+v", code, res)
	}
}
