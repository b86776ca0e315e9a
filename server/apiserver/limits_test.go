package apiserver_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
	"github.com/skiff-io/skiff/server/auth"
)

// Request limits (issue 15): in flight, watches per user, body timeout.

const adminToken = "admin-token"

var alice = &auth.User{Name: "alice", Groups: []string{auth.GroupAuthenticated}}

// send makes a raw request with token, from any goroutine.
func send(ctx context.Context, hc *http.Client, method, url, token string, body io.Reader, header ...string) (rawResponse, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return rawResponse{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		return rawResponse{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return rawResponse{code: resp.StatusCode, header: resp.Header, body: b}, err
}

// tooMany checks a 429 with Retry-After, as kube-apiserver's.
func (r rawResponse) tooMany(t *testing.T) metav1.Status {
	t.Helper()
	st := r.status(t, http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests)
	if r.header.Get("Retry-After") != "1" || st.Details == nil || st.Details.RetryAfterSeconds != 1 {
		t.Fatalf("429 without Retry-After 1: header %q, details %+v", r.header.Get("Retry-After"), st.Details)
	}
	return st
}

// TestInFlightLimit: with one read-only and one mutating seat, a request
// held in the handler makes the next one of its kind a 429 with
// Retry-After, while the other pool, watches and system:masters are not
// affected.
func TestInFlightLimit(t *testing.T) {
	entered, release := make(chan string, 4), make(chan struct{})
	authz := &apiservertest.FakeAuthorizer{Deny: func(u *auth.User, a auth.Attributes) string {
		if a.Name == "hold" {
			entered <- a.Verb
			<-release
		}
		return ""
	}}
	e := newEnv(t, apiservertest.Options{Authorizer: authz, User: alice, AdminToken: adminToken,
		MaxRequestsInFlight: 1, MaxMutatingRequestsInFlight: 1})
	base := e.srv.HTTP.URL + "/api/v1/namespaces/default/configmaps"
	hc := e.srv.HTTP.Client()
	cm := func(name string) []byte {
		return mustJSON(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}})
	}

	for _, hold := range []struct {
		verb, method, other, otherMethod string
	}{
		{"get", "GET", "list", "GET"},
		{"patch", "PATCH", "create", "POST"},
	} {
		held := make(chan error, 1)
		go func() {
			_, err := send(e.ctx, hc, hold.method, base+"/hold", apiservertest.Token, strings.NewReader(`{}`), "Content-Type", "application/merge-patch+json")
			held <- err
		}()
		if v := <-entered; v != hold.verb {
			t.Fatalf("held %s, want %s", v, hold.verb)
		}
		// The same pool is full.
		var r rawResponse
		var err error
		if hold.otherMethod == "GET" {
			r, err = send(e.ctx, hc, "GET", base, apiservertest.Token, nil)
		} else {
			r, err = send(e.ctx, hc, "POST", base, apiservertest.Token, bytes.NewReader(cm("refused")), "Content-Type", "application/json")
		}
		if err != nil {
			t.Fatal(err)
		}
		st := r.tooMany(t)
		if !strings.Contains(st.Message, "Too many requests") {
			t.Fatalf("message %q", st.Message)
		}
		// The other pool is not.
		if hold.verb == "get" {
			r, err = send(e.ctx, hc, "POST", base, apiservertest.Token, bytes.NewReader(cm("created")), "Content-Type", "application/json")
			if err != nil || r.code != http.StatusCreated {
				t.Fatalf("create while a read is held: %d %v %s", r.code, err, r.body)
			}
		} else if r, err = send(e.ctx, hc, "GET", base, apiservertest.Token, nil); err != nil || r.code != http.StatusOK {
			t.Fatalf("list while a write is held: %d %v %s", r.code, err, r.body)
		}
		// Watches do not count, nor do admins.
		ctx, cancel := context.WithCancel(e.ctx)
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"?watch=true", nil)
		req.Header.Set("Authorization", "Bearer "+apiservertest.Token)
		resp, err := hc.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("watch while the pool is full: %v %v", resp, err)
		}
		cancel()
		resp.Body.Close()
		if r, err = send(e.ctx, hc, "GET", base, adminToken, nil); err != nil || r.code != http.StatusOK {
			t.Fatalf("admin list while the pool is full: %d %v %s", r.code, err, r.body)
		}
		release <- struct{}{}
		if err := <-held; err != nil {
			t.Fatal(err)
		}
		// The seat is back.
		if r, err = send(e.ctx, hc, "GET", base, apiservertest.Token, nil); err != nil || r.code != http.StatusOK {
			t.Fatalf("list after the release: %d %v %s", r.code, err, r.body)
		}
	}
}

// TestWatchLimitPerUser: a user's watch beyond --max-watches-per-user is a
// 429 with Retry-After; closing one makes room; admins are exempt.
func TestWatchLimitPerUser(t *testing.T) {
	e := newEnv(t, apiservertest.Options{User: alice, AdminToken: adminToken, MaxWatchesPerUser: 2})
	url := e.srv.HTTP.URL + "/api/v1/namespaces/default/configmaps?watch=true"
	hc := e.srv.HTTP.Client()
	open := func(token string) (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(e.ctx)
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, cancel
	}
	var cancels []context.CancelFunc
	for i := 0; i < 2; i++ {
		resp, cancel := open(apiservertest.Token)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("watch %d: %d", i, resp.StatusCode)
		}
		defer resp.Body.Close()
		cancels = append(cancels, cancel)
	}
	resp, _ := open(apiservertest.Token)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	st := rawResponse{code: resp.StatusCode, header: resp.Header, body: b}.tooMany(t)
	if !strings.Contains(st.Message, `user "alice" has 2 watches open`) {
		t.Fatalf("message %q", st.Message)
	}
	for i := 0; i < 3; i++ {
		resp, cancel := open(adminToken)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("admin watch %d: %d", i, resp.StatusCode)
		}
		defer cancel()
		defer resp.Body.Close()
	}
	cancels[0]()
	waitFor(t, "a watch slot after closing one", func() bool {
		resp, cancel := open(apiservertest.Token)
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			cancels = append(cancels, cancel)
			return true
		}
		cancel()
		return false
	})
	for _, c := range cancels {
		c()
	}
}

// TestSlowBodyTimesOut: a body that does not arrive within the body
// timeout is answered 408 and frees its handler and seat, over HTTP/2 and
// HTTP/1.1; a body that arrives in time leaves no deadline behind on the
// connection.
func TestSlowBodyTimesOut(t *testing.T) {
	e := newEnv(t, apiservertest.Options{User: alice, RequestBodyTimeout: 300 * time.Millisecond, MaxMutatingRequestsInFlight: 1})
	base := e.srv.HTTP.URL + "/api/v1/namespaces/default/configmaps"
	h2 := e.srv.HTTP.Client()
	h1 := &http.Client{Transport: &http.Transport{
		TLSClientConfig: h2.Transport.(*http.Transport).TLSClientConfig.Clone(),
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
	t.Cleanup(h1.CloseIdleConnections)
	for name, hc := range map[string]*http.Client{"http2": h2, "http1": h1} {
		t.Run(name, func(t *testing.T) {
			pr, pw := io.Pipe()
			defer pw.Close()
			go func() { _, _ = pw.Write([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":`)) }() // and nothing more
			start := time.Now()
			r, err := send(e.ctx, hc, "POST", base, apiservertest.Token, pr, "Content-Type", "application/json")
			took := time.Since(start)
			if err != nil {
				// HTTP/1.1: the connection may be closed before the client
				// reads the answer; the handler was freed all the same.
				t.Logf("slow body: %v after %s", err, took)
			} else {
				st := r.status(t, http.StatusRequestTimeout, metav1.StatusReasonTimeout)
				if !strings.Contains(st.Message, "not received within 300ms") {
					t.Fatalf("message %q", st.Message)
				}
			}
			if took > 5*time.Second {
				t.Fatalf("the slow body was held %s", took)
			}
			// The one mutating seat is free again, and a body sent in time
			// on a kept-alive connection is not bound by the deadline
			// after it: a watch on that connection outlives it.
			cm := mustJSON(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "in-time-" + name}})
			r, err = send(e.ctx, hc, "POST", base, apiservertest.Token, bytes.NewReader(cm), "Content-Type", "application/json")
			if err != nil || r.code != http.StatusCreated {
				t.Fatalf("create after a slow body: %d %v %s", r.code, err, r.body)
			}
			req, _ := http.NewRequestWithContext(e.ctx, "GET", base+"?watch=true&resourceVersion="+e.rv(r.body), nil)
			req.Header.Set("Authorization", "Bearer "+apiservertest.Token)
			resp, err := hc.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("watch: %v %v", resp, err)
			}
			defer resp.Body.Close()
			time.Sleep(time.Second) // past the body deadline
			cm = mustJSON(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "later-" + name}})
			if r, err = send(e.ctx, e.srv.HTTP.Client(), "POST", base, apiservertest.Token, bytes.NewReader(cm), "Content-Type", "application/json"); err != nil || r.code != http.StatusCreated {
				t.Fatalf("create: %d %v %s", r.code, err, r.body)
			}
			line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
			if err != nil || !bytes.Contains(line, []byte("later-"+name)) {
				t.Fatalf("watch after the body deadline: %q %v", line, err)
			}
		})
	}
}

// rv is the resourceVersion of an object answer.
func (e *env) rv(body []byte) string {
	e.t.Helper()
	var o struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(body, &o); err != nil {
		e.t.Fatal(err)
	}
	return o.Metadata.ResourceVersion
}

var _ = fmt.Sprintf
