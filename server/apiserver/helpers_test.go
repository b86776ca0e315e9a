package apiserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
	"github.com/skiff-io/skiff/server/auth"
)

// env is one test server with a typed client and a raw HTTP client.
type env struct {
	t   *testing.T
	srv *apiservertest.Server
	cs  *kubernetes.Clientset
	ctx context.Context
}

func newEnv(t *testing.T, opts apiservertest.Options) *env {
	t.Helper()
	srv := apiservertest.NewServer(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	e := &env{t: t, srv: srv, cs: srv.Clientset(t), ctx: ctx}
	e.createNamespace("default")
	return e
}

func (e *env) createNamespace(name string) *corev1.Namespace {
	e.t.Helper()
	ns, err := e.cs.CoreV1().Namespaces().Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create namespace %s: %v", name, err)
	}
	return ns
}

// rawResponse is a raw HTTP answer.
type rawResponse struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a raw request with the test token.
func (e *env) do(method, path, contentType string, body []byte, header ...string) rawResponse {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, method, e.srv.HTTP.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiservertest.Token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.srv.HTTP.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return rawResponse{code: resp.StatusCode, header: resp.Header, body: b}
}

// status decodes a metav1.Status answer and checks its code and reason.
func (r rawResponse) status(t *testing.T, code int, reason metav1.StatusReason) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(r.body, &st); err != nil {
		t.Fatalf("answer is not a Status (%d): %v: %s", r.code, err, r.body)
	}
	if r.code != code || st.Code != int32(code) || st.Reason != reason || st.Kind != "Status" {
		t.Fatalf("got %d %s (code %d, kind %q), want %d %s: %s", r.code, st.Reason, st.Code, st.Kind, code, reason, r.body)
	}
	return st
}

// waitFor polls cond until it holds or the test's deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type (
	authUser       = auth.User
	authAttributes = auth.Attributes
)
