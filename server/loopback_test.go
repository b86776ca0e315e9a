package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestInProcessTransport(t *testing.T) {
	handlerDone := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(r.URL.RawQuery + " " + string(b) + " " + r.TLS.VerifiedChains[0][0].Subject.CommonName))
	})
	mux.HandleFunc("GET /empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		defer func() { handlerDone <- struct{}{} }()
		for i := 0; ; i++ {
			if _, err := w.Write([]byte("line\n")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if i == 1 {
				// Idle until the client goes away.
				<-r.Context().Done()
				return
			}
		}
	})
	rt := &inProcessTransport{handler: mux, conn: testConn(t)}
	client := &http.Client{Transport: rt}

	resp, err := client.Post("https://127.0.0.1:6443/echo?x=1", "text/plain", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Content-Type") != "text/plain" || string(b) != "x=1 body loopback-test" {
		t.Fatalf("got %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}

	resp, err = client.Get("https://127.0.0.1:6443/empty")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(b) != 0 {
		t.Fatalf("empty handler: got %d %q", resp.StatusCode, b)
	}

	resp, err = client.Get("https://127.0.0.1:6443/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown path: got %d", resp.StatusCode)
	}

	// A streamed response arrives as it is written; closing the body
	// ends the handler's request.
	resp, err = client.Get("https://127.0.0.1:6443/stream")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for range 2 {
		if !sc.Scan() || sc.Text() != "line" {
			t.Fatalf("stream: %q %v", sc.Text(), sc.Err())
		}
	}
	resp.Body.Close()
	select {
	case <-handlerDone:
	case <-time.After(10 * time.Second):
		t.Fatal("closing the body did not end the handler")
	}

	// A request whose context ends before the answer fails.
	ctx, cancel := context.WithCancel(context.Background())
	block := make(chan struct{})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(block)
	})
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://127.0.0.1:6443/slow", nil)
	if _, err := client.Do(req); err == nil {
		t.Fatal("a cancelled request succeeded")
	}
	select {
	case <-block:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler of a cancelled request did not end")
	}
}

// testConn is what the TLS layer would report for a verified client
// certificate of user loopback-test.
func testConn(t *testing.T) *tls.ConnectionState {
	t.Helper()
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "loopback-test"}}
	return &tls.ConnectionState{HandshakeComplete: true, VerifiedChains: [][]*x509.Certificate{{leaf}}}
}
