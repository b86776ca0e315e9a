package shipper

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// receiver is an in-process HTTP endpoint on 127.0.0.1 that keeps the
// bodies posted to path.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	answer func(body []byte) (int, string)
}

func newReceiver(t *testing.T, path string) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != path || req.Method != http.MethodPost {
			http.Error(w, "wrong path "+req.URL.Path, http.StatusNotFound)
			return
		}
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, b)
		r.mu.Unlock()
		code, resp := http.StatusNoContent, ""
		if r.answer != nil {
			code, resp = r.answer(b)
		}
		w.WriteHeader(code)
		io.WriteString(w, resp)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) all() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...)
}

// runForward ships 3 lines of one container through fw alone (no master).
func runForward(t *testing.T, fw Destination) {
	e := newEnv(t, 1)
	e.masters[0].down.Store(true)
	e.cfg.Forwarders = []Destination{fw}
	l := e.logger(t, "p1", "c1", 0, 0, 0)
	writeLines(t, l, 0, 2)
	if err := l.CopyLines("stderr", strings.NewReader("oops \"quoted\" ]\n"), false, nil); err != nil {
		t.Fatal(err)
	}
	e.run(t)
}

func TestForwardLoki(t *testing.T) {
	r := newReceiver(t, "/loki/api/v1/push")
	fw, err := NewLokiForwarder(r.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	runForward(t, fw)
	var lines []string
	waitFor(t, 10*time.Second, "3 lines at loki", func() bool {
		lines = nil
		for _, b := range r.all() {
			var push struct {
				Streams []struct {
					Stream map[string]string   `json:"stream"`
					Values [][]json.RawMessage `json:"values"`
				} `json:"streams"`
			}
			if err := json.Unmarshal(b, &push); err != nil {
				t.Fatalf("push body: %v: %s", err, b)
			}
			for _, s := range push.Streams {
				if s.Stream["namespace"] != "ns1" || s.Stream["pod"] != "p1" || s.Stream["container"] != "c1" || s.Stream["node"] != "node-a" {
					t.Fatalf("stream labels %v", s.Stream)
				}
				if _, ok := s.Stream["pod_uid"]; ok {
					t.Fatalf("pod_uid is a stream label: %v", s.Stream)
				}
				for _, v := range s.Values {
					var ts, line string
					var meta map[string]string
					if len(v) != 3 || json.Unmarshal(v[0], &ts) != nil || json.Unmarshal(v[1], &line) != nil || json.Unmarshal(v[2], &meta) != nil {
						t.Fatalf("value %s", v)
					}
					if _, err := strconv.ParseInt(ts, 10, 64); err != nil || meta["pod_uid"] != "uid-p1" {
						t.Fatalf("value %s", v)
					}
					lines = append(lines, s.Stream["stream"]+":"+line)
				}
			}
		}
		return len(lines) == 3
	})
	want := []string{"stdout:line 000000", "stdout:line 000001", `stderr:oops "quoted" ]`}
	for _, w := range want {
		if !strings.Contains(strings.Join(lines, "\n"), w) {
			t.Fatalf("lines %q lack %q", lines, w)
		}
	}
}

func TestForwardElasticsearch(t *testing.T) {
	r := newReceiver(t, "/_bulk")
	r.answer = func([]byte) (int, string) { return http.StatusOK, `{"errors":false,"items":[]}` }
	fw, err := NewElasticsearchForwarder(r.srv.URL + "/kube-logs")
	if err != nil {
		t.Fatal(err)
	}
	runForward(t, fw)
	var docs []map[string]any
	waitFor(t, 10*time.Second, "3 documents", func() bool {
		docs = nil
		for _, b := range r.all() {
			sc := bufio.NewScanner(strings.NewReader(string(b)))
			for i := 0; sc.Scan(); i++ {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("bulk line %q: %v", sc.Text(), err)
				}
				if i%2 == 0 {
					c, ok := m["create"].(map[string]any)
					if !ok || c["_index"] != "kube-logs" || !strings.HasPrefix(c["_id"].(string), "node-a/uid-p1/c1/0/") {
						t.Fatalf("action line %q", sc.Text())
					}
					continue
				}
				docs = append(docs, m)
			}
		}
		return len(docs) == 3
	})
	if docs[0]["message"] != "line 000000" || docs[0]["namespace"] != "ns1" || docs[0]["@timestamp"] == nil || docs[0]["label.app"] != "p1" {
		t.Fatalf("document %v", docs[0])
	}
}

func TestForwardOTLP(t *testing.T) {
	r := newReceiver(t, "/v1/logs")
	r.answer = func([]byte) (int, string) { return http.StatusOK, `{}` }
	fw, err := NewOTLPForwarder(r.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	runForward(t, fw)
	type anyValue struct {
		StringValue string `json:"stringValue"`
	}
	type kvp struct {
		Key   string   `json:"key"`
		Value anyValue `json:"value"`
	}
	var bodies []string
	var attrs map[string]string
	waitFor(t, 10*time.Second, "3 OTLP log records", func() bool {
		bodies = nil
		for _, b := range r.all() {
			var req struct {
				ResourceLogs []struct {
					Resource  struct{ Attributes []kvp } `json:"resource"`
					ScopeLogs []struct {
						LogRecords []struct {
							TimeUnixNano string   `json:"timeUnixNano"`
							Body         anyValue `json:"body"`
							Attributes   []kvp    `json:"attributes"`
							SeverityText string   `json:"severityText"`
						} `json:"logRecords"`
					} `json:"scopeLogs"`
				} `json:"resourceLogs"`
			}
			if err := json.Unmarshal(b, &req); err != nil {
				t.Fatalf("OTLP body: %v: %s", err, b)
			}
			for _, rl := range req.ResourceLogs {
				if len(rl.Resource.Attributes) == 0 || rl.Resource.Attributes[0].Key != "k8s.node.name" || rl.Resource.Attributes[0].Value.StringValue != "node-a" {
					t.Fatalf("resource %v", rl.Resource)
				}
				for _, sl := range rl.ScopeLogs {
					for _, lr := range sl.LogRecords {
						if _, err := strconv.ParseInt(lr.TimeUnixNano, 10, 64); err != nil {
							t.Fatalf("timeUnixNano %q", lr.TimeUnixNano)
						}
						bodies = append(bodies, lr.SeverityText+":"+lr.Body.StringValue)
						attrs = map[string]string{}
						for _, a := range lr.Attributes {
							attrs[a.Key] = a.Value.StringValue
						}
					}
				}
			}
		}
		return len(bodies) == 3
	})
	if bodies[0] != "INFO:line 000000" || bodies[2] != `ERROR:oops "quoted" ]` {
		t.Fatalf("bodies %q", bodies)
	}
	if attrs["k8s.namespace.name"] != "ns1" || attrs["k8s.pod.name"] != "p1" || attrs["k8s.container.name"] != "c1" || attrs["log.iostream"] != "stderr" {
		t.Fatalf("attributes %v", attrs)
	}
}

// syslogFrameRE is RFC 5424 in RFC 6587 octet counting.
var syslogFrameRE = regexp.MustCompile(`^<(\d+)>1 (\S+) (\S+) (\S+) - - \[skiff@32473 ([^\]]|\\\])*\] \x{FEFF}(.*)$`)

func TestForwardSyslog(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	msgs := make(chan string, 16)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			lenStr, err := br.ReadString(' ')
			if err != nil {
				return
			}
			n, err := strconv.Atoi(strings.TrimSpace(lenStr))
			if err != nil {
				msgs <- "bad frame length " + lenStr
				return
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(br, b); err != nil {
				return
			}
			msgs <- string(b)
		}
	}()
	fw, err := NewSyslogForwarder("tcp://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	runForward(t, fw)
	var got []string
	for len(got) < 3 {
		select {
		case m := <-msgs:
			got = append(got, m)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d syslog messages: %q", len(got), got)
		}
	}
	for i, want := range []struct{ pri, msg string }{{"14", "line 000000"}, {"14", "line 000001"}, {"11", `oops "quoted" ]`}} {
		m := syslogFrameRE.FindStringSubmatch(got[i])
		if m == nil {
			t.Fatalf("not RFC 5424: %q", got[i])
		}
		if m[1] != want.pri || m[3] != "node-a" || m[4] != "c1" || m[6] != want.msg {
			t.Fatalf("message %d: %q", i, got[i])
		}
		if _, err := time.Parse(time.RFC3339Nano, m[2]); err != nil {
			t.Fatalf("timestamp %q: %v", m[2], err)
		}
	}
	if !strings.Contains(got[2], `namespace="ns1"`) || !strings.Contains(got[2], `pod="p1"`) {
		t.Fatalf("structured data: %q", got[2])
	}
}
