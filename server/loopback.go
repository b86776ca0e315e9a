package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/server/auth"
)

// loopbackConfig returns a client-go config for leader work (scheduler,
// controllers) that calls this master's own API in process, as user name
// in system:masters. Going through the API gives controllers the same
// validation, defaulting and admission as every other client; going
// in process spares them TLS, HTTP/2 and the network stack.
func (s *Server) loopbackConfig(name string) (*rest.Config, error) {
	certPEM, _, err := s.ca.IssueClient(name, []string{auth.GroupMasters})
	if err != nil {
		return nil, fmt.Errorf("loopback credentials for %s: %w", name, err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("loopback credentials: no certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("loopback credentials: %w", err)
	}
	host := s.cfg.BindAddress
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return &rest.Config{
		// Only names the API's URLs: nothing is dialed.
		Host: "https://" + net.JoinHostPort(host, strconv.Itoa(s.cfg.APIPort)),
		Transport: &inProcessTransport{
			handler: s.httpSrv.Handler,
			// What the TLS layer hands the authenticator for a client
			// certificate it verified: the same user as over the network.
			conn: &tls.ConnectionState{HandshakeComplete: true, VerifiedChains: [][]*x509.Certificate{{leaf, s.ca.Cert}}},
		},
		UserAgent: "skiff/" + name,
		QPS:       -1, // no client-side rate limit: the caller paces itself
		Burst:     0,
	}, nil
}

// inProcessTransport is an http.RoundTripper that serves each request with
// the master's own handler in this process, as if it had arrived over TLS
// with the client certificate whose verified chain conn holds. Responses
// stream through a pipe, so watches work as over the network.
type inProcessTransport struct {
	handler http.Handler
	conn    *tls.ConnectionState
}

func (t *inProcessTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	// The handler's request ends when the client closes the body (a
	// stopped watch) as it would when a connection closes.
	sctx, cancel := context.WithCancel(ctx)
	sreq := req.Clone(sctx)
	sreq.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	sreq.RequestURI = sreq.URL.RequestURI()
	sreq.Host = req.URL.Host
	sreq.RemoteAddr = "127.0.0.1:0"
	sreq.TLS = t.conn
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	pr, pw := io.Pipe()
	rw := &pipeResponseWriter{header: http.Header{}, body: pw, ready: make(chan struct{})}
	go func() {
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					pw.CloseWithError(errors.New("in-process handler aborted"))
				} else {
					pw.CloseWithError(fmt.Errorf("in-process handler panicked: %v", p))
				}
				rw.finish()
				return
			}
			rw.finish()
			pw.Close()
		}()
		defer func() {
			if req.Body != nil {
				req.Body.Close()
			}
		}()
		t.handler.ServeHTTP(rw, sreq)
	}()
	select {
	case <-rw.ready:
	case <-ctx.Done():
		pr.CloseWithError(ctx.Err())
		return nil, ctx.Err()
	}
	return &http.Response{
		Status:     strconv.Itoa(rw.code) + " " + http.StatusText(rw.code),
		StatusCode: rw.code,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        rw.sent,
		Body:          &cancelOnClose{ReadCloser: pr, cancel: cancel},
		ContentLength: -1,
		Request:       req,
	}, nil
}

// pipeResponseWriter is the http.ResponseWriter of an in-process request:
// the status and headers are handed over at the first write (or when the
// handler returns), the body through a pipe the client reads.
type pipeResponseWriter struct {
	header http.Header
	body   *io.PipeWriter
	once   sync.Once
	ready  chan struct{}
	code   int
	sent   http.Header
}

func (w *pipeResponseWriter) Header() http.Header { return w.header }

func (w *pipeResponseWriter) WriteHeader(code int) {
	w.once.Do(func() {
		w.code, w.sent = code, w.header.Clone()
		close(w.ready)
	})
}

func (w *pipeResponseWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// Flush does nothing: every Write reaches the reader before it returns.
func (w *pipeResponseWriter) Flush() {}

// finish sends a 200 with no body when the handler wrote nothing.
func (w *pipeResponseWriter) finish() { w.WriteHeader(http.StatusOK) }

// cancelOnClose is a response body that ends its request when closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	b.cancel()
	return b.ReadCloser.Close()
}
