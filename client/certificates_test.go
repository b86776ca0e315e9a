package client

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-io/skiff/server/pki"
)

// TestNodeCertificatesRotateInPlace: after Update (and after Run renews),
// new connections present the new client certificate, the kubelet server
// serves the new serving certificate, and the files are replaced.
func TestNodeCertificatesRotateInPlace(t *testing.T) {
	ca, err := pki.GenerateCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(life time.Duration) *pki.NodeCredentials {
		c, err := ca.IssueNodeCredentials("n1", []string{"127.0.0.1"}, life)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var seen atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.TLS.PeerCertificates[0].SerialNumber.String())
	}))
	serverCert, serverKey, err := ca.IssueServer("m1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS, err = pki.ServerTLSConfig(ca.Pool(), serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	srv.StartTLS()
	defer srv.Close()

	dir := t.TempDir()
	first := issue(time.Hour)
	m, err := NewNodeCertificates(dir, first)
	if err != nil {
		t.Fatal(err)
	}
	if at := time.Until(m.RenewAt()); at < 40*time.Minute || at > 50*time.Minute {
		t.Errorf("renewal in %s, want 70-80%% of an hour", at)
	}
	cfg, err := m.RESTConfig(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: cfg.Transport, Timeout: 5 * time.Second}
	get := func() string {
		t.Helper()
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return seen.Load().(string)
	}
	serial := func(certPEM string) string {
		c, err := parseCertPEM(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c.SerialNumber.String()
	}
	if got := get(); got != serial(first.ClientCert) {
		t.Fatalf("server saw %s, want the first certificate", got)
	}
	second := issue(time.Hour)
	if err := m.Update(second); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != serial(second.ClientCert) {
		t.Fatalf("after Update the server saw %s, want the new certificate", got)
	}
	saved, err := os.ReadFile(filepath.Join(dir, nodeClientCertFile))
	if err != nil || string(saved) != second.ClientCert {
		t.Fatalf("saved client certificate is not the new one (%v)", err)
	}
	stls, err := m.ServingTLS()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := stls.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || sc.Leaf.SerialNumber.String() != serial(second.ServingCert) {
		t.Fatalf("serving certificate is not the new one (%v)", err)
	}

	// Run renews a short-lived credential on its own.
	short := issue(2 * time.Second)
	if err := m.Update(short); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, func(context.Context) (*pki.NodeCredentials, error) { return issue(time.Hour), nil }, slog.Default())
	}()
	deadline := time.Now().Add(10 * time.Second)
	for serial(m.Current().ClientCert) == serial(short.ClientCert) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not renew a 2s certificate within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if got := get(); got != serial(m.Current().ClientCert) {
		t.Fatalf("after renewal the server saw %s, want the renewed certificate", got)
	}
}
