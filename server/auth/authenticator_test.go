package auth

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/skiff-io/skiff/server/pki"
)

func newRequest(t *testing.T, authorization string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
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
	if !errors.Is(err, ErrUnauthenticated) || u != nil {
		t.Fatalf("Authenticate = %+v, %v; want nil, ErrUnauthenticated", u, err)
	}
}

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.GenerateCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func parseCertPEM(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
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

func TestClientCertificate(t *testing.T) {
	ca := newCA(t)
	certPEM, _, err := ca.IssueClient("alice", []string{"system:authenticated"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseCertPEM(t, certPEM)
	a := NewAuthenticator(AuthenticatorConfig{})

	// A verified certificate wins over a bearer token.
	r := newRequest(t, "Bearer not-checked")
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf, ca.Cert}}}
	u, err := a.Authenticate(r)
	assertUser(t, u, err, "alice", "system:authenticated") // not repeated

	// A certificate the TLS layer did not verify counts for nothing.
	r = newRequest(t, "")
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
	u, err = a.Authenticate(r)
	assertUser(t, u, err, "system:anonymous", "system:unauthenticated")
}

// TestClientCertificateOverTLS authenticates real requests that went through
// a server configured with pki.ServerTLSConfig.
func TestClientCertificateOverTLS(t *testing.T) {
	ca := newCA(t)
	srvCert, srvKey, err := ca.IssueServer("m1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := pki.ServerTLSConfig(ca.Pool(), srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(AuthenticatorConfig{})
	type result struct {
		u   *User
		err error
	}
	results := make(chan result, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := a.Authenticate(r)
		results <- result{u, err}
	}))
	srv.TLS = tlsCfg
	srv.StartTLS()
	t.Cleanup(srv.Close)

	get := func(t *testing.T, certPEM, keyPEM []byte) result {
		t.Helper()
		cfg, err := pki.ClientTLSConfig(ca.Pool(), certPEM, keyPEM, "")
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{TLSClientConfig: cfg}
		t.Cleanup(tr.CloseIdleConnections)
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return <-results
	}

	userCert, userKey, err := ca.IssueClient("bob", []string{"system:masters", "ops"})
	if err != nil {
		t.Fatal(err)
	}
	res := get(t, userCert, userKey)
	if res.err != nil || res.u.Name != "bob" || !res.u.InGroup("system:masters") || !res.u.InGroup("ops") || !res.u.InGroup(GroupAuthenticated) {
		t.Fatalf("user cert: %+v, %v", res.u, res.err)
	}
	res = get(t, srvCert, srvKey)
	assertUser(t, res.u, res.err, "skiff-server:m1", "skiff:servers", "system:authenticated")
	res = get(t, nil, nil)
	assertUser(t, res.u, res.err, "system:anonymous", "system:unauthenticated")
}

func TestJoinToken(t *testing.T) {
	caPEM := newCA(t).CertPEM
	secret, err := pki.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	full := pki.FormatToken(caPEM, secret)
	otherCA := pki.FormatToken(newCA(t).CertPEM, secret)

	for name, cfg := range map[string]AuthenticatorConfig{
		"bare secret configured":           {JoinSecret: secret},
		"full token configured":            {JoinSecret: full},
		"bare secret with cluster CA hash": {JoinSecret: secret, CAHash: pki.CAHash(caPEM)},
	} {
		t.Run(name, func(t *testing.T) {
			a := NewAuthenticator(cfg)
			for _, tok := range []string{secret, full} {
				u, err := a.Authenticate(newRequest(t, "Bearer "+tok))
				assertUser(t, u, err, "skiff:joiner", "system:bootstrappers", "system:authenticated")
			}
			// The scheme is case-insensitive, as in Kubernetes.
			u, err := a.Authenticate(newRequest(t, "bearer "+secret))
			assertUser(t, u, err, "skiff:joiner", "system:bootstrappers", "system:authenticated")

			for _, bad := range []string{secret + "x", secret[:len(secret)-1], "K10" + pki.CAHash(caPEM) + "::server:wrong"} {
				u, err := a.Authenticate(newRequest(t, "Bearer "+bad))
				assertUnauthenticated(t, u, err)
			}
		})
	}

	t.Run("token pinning another CA", func(t *testing.T) {
		a := NewAuthenticator(AuthenticatorConfig{JoinSecret: full})
		u, err := a.Authenticate(newRequest(t, "Bearer "+otherCA))
		assertUnauthenticated(t, u, err)
	})
	t.Run("join disabled", func(t *testing.T) {
		a := NewAuthenticator(AuthenticatorConfig{})
		u, err := a.Authenticate(newRequest(t, "Bearer "+secret))
		assertUnauthenticated(t, u, err)
	})
}

func TestMalformedAuthorization(t *testing.T) {
	a := NewAuthenticator(AuthenticatorConfig{JoinSecret: "secret"})
	for _, h := range []string{"Bearer", "Bearer ", "Basic c2VjcmV0", "secret", "Token secret"} {
		u, err := a.Authenticate(newRequest(t, h))
		assertUnauthenticated(t, u, err)
	}
}
