package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/client"
	"github.com/skiff-io/skiff/e2e/testutil"
)

// logLine is a record as POST /logs/v1/ingest takes it and the query API
// answers it (docs/logging.md).
type logLine struct {
	Source string            `json:"source,omitempty"`
	Offset int64             `json:"offset,omitempty"`
	Time   time.Time         `json:"time"`
	Msg    string            `json:"msg"`
	Fields map[string]string `json:"fields"`
}

func logBatch(source, node, ns, pod string, from, to int) []byte {
	var b bytes.Buffer
	now := time.Now()
	for i := from; i <= to; i++ {
		line, _ := json.Marshal(logLine{Source: source, Offset: int64(i), Time: now.Add(time.Duration(i-to) * time.Millisecond),
			Msg: fmt.Sprintf("line %06d of %s", i, pod), Fields: map[string]string{"kind": "container", "node": node,
				"namespace": ns, "pod": pod, "container": "app", "stream": "stdout"}})
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func postLogs(t *testing.T, hc *http.Client, m *testutil.Master, body []byte) (int, string) {
	t.Helper()
	resp, err := hc.Post(m.URL()+"/logs/v1/ingest", "application/x-ndjson", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("ingest on %s: %v", m.Name, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func queryLogs(hc *http.Client, m *testutil.Master, params url.Values) (int, []logLine, string, error) {
	resp, err := hc.Get(m.URL() + "/logs/v1/query?" + params.Encode())
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, string(body), nil
	}
	var out []logLine
	dec := json.NewDecoder(bytes.NewReader(body))
	for dec.More() {
		var l logLine
		if err := dec.Decode(&l); err != nil {
			return 0, nil, "", err
		}
		out = append(out, l)
	}
	return resp.StatusCode, out, string(body), nil
}

// TestLogStore: a node's records posted to every master of three are on
// each (deduplicated, newest first), any survivor answers after the
// leader is killed, Events are logged, bad input is refused, and RBAC
// keeps a namespace's logs to who may read its pods' logs.
func TestLogStore(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	m1 := c.Masters[0]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	creds, err := client.BootstrapNode(ctx, m1.URL(), m1.AgentToken(), "n1", []string{"127.0.0.1"})
	if err != nil {
		t.Fatalf("node credentials: %v", err)
	}
	pair, err := tls.X509KeyPair([]byte(creds.ClientCert), []byte(creds.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	node := caClient(t, m1, &pair)
	admin := c.Admin

	cs := m1.Clientset()
	for _, ns := range []string{"team", "other"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The node's records go to every master, as its shipper sends them.
	for _, m := range c.Masters {
		for _, b := range [][]byte{logBatch("n1/uid-web/app/0", "n1", "team", "web", 1, 1000),
			logBatch("n1/uid-db/app/0", "n1", "other", "db", 1, 10)} {
			code, body := postLogs(t, node, m, b)
			if code != http.StatusOK {
				t.Fatalf("ingest on %s: %d %s", m.Name, code, body)
			}
		}
	}
	// A re-sent (overlapping) batch stores only what is new.
	code, body := postLogs(t, node, m1, logBatch("n1/uid-web/app/0", "n1", "team", "web", 991, 1010))
	if code != http.StatusOK || !strings.Contains(body, `"accepted":10`) || !strings.Contains(body, `"duplicates":10`) {
		t.Fatalf("overlapping batch on m1: %d %s, want 10 accepted and 10 duplicates", code, body)
	}
	for _, m := range c.Masters[1:] {
		if code, body := postLogs(t, node, m, logBatch("n1/uid-web/app/0", "n1", "team", "web", 1001, 1010)); code != http.StatusOK {
			t.Fatalf("ingest on %s: %d %s", m.Name, code, body)
		}
	}

	// Bad input.
	if code, body := postLogs(t, node, m1, logBatch("n2/x/app/0", "n2", "team", "web", 1, 1)); code != http.StatusForbidden {
		t.Errorf("node n1 posting a record of node n2: %d %s, want 403", code, body)
	}
	bad := append(logBatch("n1/x/app/0", "n1", "team", "web", 1, 1), []byte("{not json\n")...)
	if code, body := postLogs(t, node, m1, bad); code != http.StatusBadRequest || !strings.Contains(body, "line 2") {
		t.Errorf("malformed line 2: %d %s, want 400 naming line 2", code, body)
	}
	if code, body := postLogs(t, node, m1, bytes.Repeat([]byte("x"), 9<<20)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("9 MiB body: %d %.200s, want 413", code, body)
	}
	if code, body := postLogs(t, caClient(t, m1, nil), m1, logBatch("n1/y/app/0", "n1", "team", "web", 1, 1)); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("anonymous ingest: %d %s, want 401 or 403", code, body)
	}

	// An Event shows up as kind=event on every master.
	if _, err := cs.CoreV1().Events("team").Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "web.1"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "team", Name: "web"},
		Reason:         "Testing", Message: "quokka event message", Type: "Normal",
		FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Count: 1,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Masters {
		testutil.WaitFor(t, 30*time.Second, "the Event in "+m.Name+"'s log store", func() error {
			_, res, body, err := queryLogs(admin, m, url.Values{"query": {"quokka"}, "kind": {"event"}})
			if err != nil {
				return err
			}
			if len(res) != 1 || res[0].Fields["reason"] != "Testing" || res[0].Fields["pod"] != "web" {
				return fmt.Errorf("got %s", body)
			}
			return nil
		})
	}

	// The leader dies: every survivor answers with all 1010 lines, newest first.
	leader := c.Leader(30 * time.Second)
	// Killed after a checkpoint covered the lines (their marks are in
	// its hwm file), the harder case for its WAL.
	testutil.WaitFor(t, 30*time.Second, "a checkpoint on "+leader.Name, func() error {
		b, err := os.ReadFile(filepath.Join(leader.DataDir, "logs", "hwm"))
		if err != nil || !strings.Contains(string(b), `1010 `) {
			return fmt.Errorf("hwm: %q %v", b, err)
		}
		return nil
	})
	leader.Kill()
	for _, m := range c.Masters {
		if m == leader {
			continue
		}
		testutil.WaitFor(t, 30*time.Second, "1010 lines on "+m.Name, func() error {
			_, res, body, err := queryLogs(admin, m, url.Values{"namespace": {"team"}, "pod": {"web"}, "kind": {"container"}, "limit": {"5000"}})
			if err != nil {
				return err
			}
			if len(res) != 1010 {
				return fmt.Errorf("%d records: %.300s", len(res), body)
			}
			for i, r := range res {
				want := fmt.Sprintf("line %06d of web", 1010-i)
				if r.Msg != want {
					return fmt.Errorf("record %d is %q, want %q", i, r.Msg, want)
				}
			}
			return nil
		})
		if code, _, body, err := queryLogs(admin, m, url.Values{"query": {"foo:(("}}); err != nil || code != http.StatusBadRequest || !strings.Contains(body, "LogsQL") {
			t.Errorf("bad LogsQL on %s: %d %s %v, want a 400 Status", m.Name, code, body, err)
		}
	}
	// The killed master comes back: its WAL replay and its Events relist
	// store nothing twice.
	leader.Start()
	leader.WaitReady(60 * time.Second)
	testutil.WaitFor(t, 30*time.Second, "the restarted "+leader.Name+"'s records", func() error {
		_, res, body, err := queryLogs(admin, leader, url.Values{"namespace": {"team"}, "limit": {"5000"}})
		if err != nil {
			return err
		}
		var web, quokka int
		for _, r := range res {
			switch {
			case r.Fields["pod"] == "web" && r.Fields["kind"] == "container":
				web++
			case strings.Contains(r.Msg, "quokka"):
				quokka++
			}
		}
		if web != 1010 || quokka != 1 {
			return fmt.Errorf("%d lines of web (want 1010), %d quokka events (want 1): %.300s", web, quokka, body)
		}
		return nil
	})
	var survivor *testutil.Master
	for _, m := range c.Masters {
		if m != leader {
			survivor = m
			break
		}
	}

	// The CLI: the newest 3 of web's lines, oldest first; -o json.
	out, err := survivor.Run(ctx, "logs", "search", "-n", "team", "--pod", "web", "--limit", "3")
	if err != nil {
		t.Fatalf("skiff logs search: %v: %s", err, out)
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); len(got) != 3 || !strings.HasSuffix(got[0], "team/web app line 001008 of web") ||
		!strings.HasSuffix(got[2], "team/web app line 001010 of web") {
		t.Errorf("skiff logs search -n team --pod web --limit 3:\n%s", out)
	}
	out, err = survivor.Run(ctx, "logs", "search", "quokka", "-o", "json")
	if err != nil || !strings.Contains(out, `"reason":"Testing"`) || strings.Count(out, "\n") != 1 {
		t.Errorf("skiff logs search quokka -o json: %v: %s", err, out)
	}
	if out, err := survivor.Run(ctx, "logs", "search", "foo:(("); err == nil || !strings.Contains(out, "400") {
		t.Errorf("skiff logs search with bad LogsQL: %v: %s", err, out)
	}

	// RBAC: a service account bound to view in team reads team's logs,
	// and gets 403 for other's; without a namespace it sees only team's.
	cs = survivor.Clientset()
	if _, err := cs.CoreV1().ServiceAccounts("team").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "reader-view"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: "team"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok := kubectlCreateToken(t, survivor.Kubeconfig(), "reader", "-n", "team")
	reader := &http.Client{Timeout: 30 * time.Second, Transport: &bearer{token: tok, rt: caClient(t, survivor, nil).Transport}}
	testutil.WaitFor(t, 30*time.Second, "view in team reads team's logs", func() error {
		code, res, body, err := queryLogs(reader, survivor, url.Values{"namespace": {"team"}, "kind": {"container"}, "limit": {"3"}})
		if err != nil {
			return err
		}
		if code != http.StatusOK || len(res) != 3 {
			return fmt.Errorf("%d %.300s", code, body)
		}
		return nil
	})
	if code, _, body, err := queryLogs(reader, survivor, url.Values{"namespace": {"other"}}); err != nil || code != http.StatusForbidden {
		t.Errorf("view in team asking for other's logs: %d %s %v, want 403", code, body, err)
	}
	code, res, body, err := queryLogs(reader, survivor, url.Values{"limit": {"5000"}})
	if err != nil || code != http.StatusOK {
		t.Fatalf("view in team, no namespace: %d %s %v", code, body, err)
	}
	var team int
	for _, r := range res {
		if r.Fields["namespace"] != "team" {
			t.Fatalf("view in team sees a record of namespace %q: %+v", r.Fields["namespace"], r)
		}
		team++
	}
	if team < 1010 {
		t.Errorf("view in team, no namespace: %d of team's records, want at least 1010", team)
	}
	code, _, body, err = queryLogs(reader, survivor, url.Values{"kind": {"agent"}})
	if err != nil || code != http.StatusOK {
		t.Errorf("view in team asking for agent records: %d %s %v", code, body, err)
	}

	// Tail: a record posted after the tail started streams out.
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()
	req, _ := http.NewRequestWithContext(tctx, http.MethodGet, survivor.URL()+"/logs/v1/tail?namespace=team&pod=tailed", nil)
	tailClient := caClient(t, survivor, nil)
	tailClient.Timeout = 0
	tailClient.Transport = admin.Transport
	resp, err := tailClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("tail: %v %v", resp, err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	posted := 0
	testutil.WaitFor(t, 20*time.Second, "the tailed record", func() error {
		posted++
		if code, body := postLogs(t, node, survivor, logBatch("n1/uid-tailed/app/0", "n1", "team", "tailed", posted, posted)); code != http.StatusOK {
			return fmt.Errorf("ingest: %d %s", code, body)
		}
		select {
		case l := <-lines:
			if !strings.Contains(l, "of tailed") {
				return fmt.Errorf("tail sent %s", l)
			}
			return nil
		case <-time.After(2 * time.Second):
			return fmt.Errorf("nothing yet")
		}
	})
}

// bearer adds a bearer token to requests.
type bearer struct {
	token string
	rt    http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(r)
}
