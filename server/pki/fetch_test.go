package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// newCAServer starts a TLS server presenting certPEM/keyPEM that serves
// servedCA at /cacerts. It fails the test if a request carries credentials.
func newCAServer(t *testing.T, certPEM, keyPEM, servedCA []byte) *httptest.Server {
	t.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("unverified request carried an Authorization header")
		}
		if r.URL.Path != "/cacerts" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(servedCA)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestFetchVerifiedCA(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM, err := ca.IssueServer("m1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := newCAServer(t, certPEM, keyPEM, ca.CertPEM)
	for _, url := range []string{srv.URL, srv.URL + "/"} {
		got, err := FetchVerifiedCA(t.Context(), url, CAHash(ca.CertPEM))
		if err != nil {
			t.Fatalf("FetchVerifiedCA(%s): %v", url, err)
		}
		if string(got) != string(ca.CertPEM) {
			t.Fatal("fetched CA differs from the served one")
		}
	}
	// The hash from a token may be upper case.
	if _, err := FetchVerifiedCA(t.Context(), srv.URL, strings.ToUpper(CAHash(ca.CertPEM))); err != nil {
		t.Fatalf("upper-case hash: %v", err)
	}
}

func TestFetchVerifiedCAMismatch(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	certPEM, keyPEM, err := ca.IssueServer("m1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := newCAServer(t, certPEM, keyPEM, ca.CertPEM)
	_, err = FetchVerifiedCA(t.Context(), srv.URL, CAHash(other.CertPEM))
	if !errors.Is(err, ErrCAMismatch) {
		t.Fatalf("err = %v, want ErrCAMismatch", err)
	}
	if !strings.Contains(err.Error(), "does not match the token") {
		t.Fatalf("error %q does not say the CA does not match the token", err)
	}
}

// A man in the middle serves the genuine CA PEM (so the hash matches) but
// can only present a certificate of its own.
func TestFetchVerifiedCARejectsMITM(t *testing.T) {
	ca := newTestCA(t)
	mitm := newTestCA(t)
	certPEM, keyPEM, err := mitm.IssueServer("m1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := newCAServer(t, certPEM, keyPEM, ca.CertPEM)
	if _, err := FetchVerifiedCA(t.Context(), srv.URL, CAHash(ca.CertPEM)); !errors.Is(err, ErrUntrustedServer) {
		t.Fatalf("err = %v, want ErrUntrustedServer", err)
	}
}

func TestFetchVerifiedCARejectsWrongServerCert(t *testing.T) {
	ca := newTestCA(t)
	// Signed by the right CA but for another host.
	otherHostCert, otherHostKey, err := ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "elsewhere"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"elsewhere.example.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Signed by the right CA but a client certificate.
	clientCert, clientKey, err := ca.IssueClient("127.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string][2][]byte{
		"other host":         {otherHostCert, otherHostKey},
		"client certificate": {clientCert, clientKey},
	} {
		t.Run(name, func(t *testing.T) {
			srv := newCAServer(t, pair[0], pair[1], ca.CertPEM)
			if _, err := FetchVerifiedCA(t.Context(), srv.URL, CAHash(ca.CertPEM)); !errors.Is(err, ErrUntrustedServer) {
				t.Fatalf("err = %v, want ErrUntrustedServer", err)
			}
		})
	}
}

func TestFetchVerifiedCABadInput(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM, err := ca.IssueServer("m1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := newCAServer(t, certPEM, keyPEM, ca.CertPEM)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("plain HTTP server was contacted")
	}))
	t.Cleanup(plain.Close)
	hash := CAHash(ca.CertPEM)
	tests := []struct {
		name, url, hash string
	}{
		{"plain http", plain.URL, hash},
		{"no host", "https://", hash},
		{"empty hash", srv.URL, ""},
		{"short hash", srv.URL, "abcd"},
		{"not found", srv.URL + "/nope", hash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := FetchVerifiedCA(t.Context(), tt.url, tt.hash); err == nil {
				t.Fatal("FetchVerifiedCA succeeded")
			}
		})
	}
}

func TestFetchVerifiedCANonCABody(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM, err := ca.IssueServer("m1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("not a certificate")
	srv := newCAServer(t, certPEM, keyPEM, body)
	_, err = FetchVerifiedCA(t.Context(), srv.URL, CAHash(body))
	if err == nil || errors.Is(err, ErrCAMismatch) {
		t.Fatalf("err = %v, want a 'no certificate' error", err)
	}
}

func TestFetchVerifiedCAHonoursContext(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM, err := ca.IssueServer("m1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := newCAServer(t, certPEM, keyPEM, ca.CertPEM)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := FetchVerifiedCA(ctx, srv.URL, CAHash(ca.CertPEM)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
