package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/server/pki"
)

func newRequest(t *testing.T, authorization string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://skiff.test/api", nil)
	r.TLS = nil // httptest sets a ConnectionState for https URLs
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}

func assertUser(t *testing.T, u *User, err error, name string, groups ...string) {
	t.Helper()
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if u.Name != name || !slices.Equal(u.Groups, groups) {
		t.Fatalf("user = %q %q, want %q %q", u.Name, u.Groups, name, groups)
	}
}

func assertUnauthenticated(t *testing.T, u *User, err error) {
	t.Helper()
	if !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("Authenticate = %+v, %v; want ErrUnauthenticated", u, err)
	}
}

func TestGroupMatchesPKI(t *testing.T) {
	if GroupSkiffServers != pki.ServerOrganization {
		t.Fatalf("GroupSkiffServers %q != pki.ServerOrganization %q", GroupSkiffServers, pki.ServerOrganization)
	}
}

func TestAnonymous(t *testing.T) {
	a := NewAuthenticator(AuthenticatorConfig{JoinSecret: "s"})
	u, err := a.Authenticate(newRequest(t, ""))
	assertUser(t, u, err, "system:anonymous", "system:unauthenticated")
}

func issueClientCert(t *testing.T, ca *pki.CA, cn string, groups ...string) *x509.Certificate {
	t.Helper()
	certPEM, _, err := ca.IssueClient(cn, groups)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, mustKey(t, ca, certPEM))
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

func mustKey(t *testing.T, _ *pki.CA, _ []byte) []byte { t.Helper(); return nil }

func TestClientCertificate(t *testing.T) {
	ca, err := pki.GenerateCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.IssueClient("alice", []string{"dev", "system:authenticated"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pemBody(t, certPEM))
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(AuthenticatorConfig{})

	r := newRequest(t, "Bearer ignored-when-a-certificate-is-verified")
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf, ca.Cert}}}
	u, err := a.Authenticate(r)
	// system:authenticated is not repeated.
	assertUser(t, u, err, "alice", "dev", "system:authenticated")

	// A certificate the TLS layer did not verify counts for nothing.
	r = newRequest(t, "")
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
	u, err = a.Authenticate(r)
	assertUser(t, u, err, "system:anonymous", "system:unauthenticated")
}

func pemBody(t *testing.T, p []byte) []byte {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p) {
		t.Fatal("no certificate in PEM")
	}
	_, rest, ok := strings.Cut(string(p), "\n")
	_ = rest
	_ = ok
	c, err := tls.X509KeyPair(p, nil)
	_ = c
	_ = err
	return nil
}
