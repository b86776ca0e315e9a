package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"
)

func csrFor(t *testing.T, tmpl *x509.CertificateRequest) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: pemCertificateRequest, Bytes: der}))
}

func TestSignNodeCSRs(t *testing.T) {
	ca := newTestCA(t)
	req, clientKey, servingKey, err := NewNodeCSRs("n1", []string{"10.0.0.7", "n1.example"})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ca.SignNodeCSRs(req, 30*time.Second)
	if err != nil {
		t.Fatalf("SignNodeCSRs: %v", err)
	}
	creds := &NodeCredentials{CACert: certs.CACert, ClientCert: certs.ClientCert, ClientKey: string(clientKey),
		ServingCert: certs.ServingCert, ServingKey: string(servingKey)}
	if err := creds.Check("n1"); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := creds.Check("n2"); err == nil {
		t.Fatalf("Check accepted the credentials of n1 for n2")
	}
	c := mustParseCert(t, []byte(certs.ClientCert))
	if c.Subject.CommonName != "system:node:n1" || !slices.Equal(c.Subject.Organization, []string{NodesGroup}) ||
		!slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(c.DNSNames)+len(c.IPAddresses) != 0 {
		t.Errorf("client certificate: %v %v %v %v", c.Subject, c.ExtKeyUsage, c.DNSNames, c.IPAddresses)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < 30*time.Second || life > 35*time.Second {
		t.Errorf("client certificate lives %s, want 30s (+ 1/10 backdating)", life)
	}
	s := mustParseCert(t, []byte(certs.ServingCert))
	if !slices.Equal(s.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("serving certificate usages %v", s.ExtKeyUsage)
	}
	for _, h := range []string{"n1", "n1.example", "10.0.0.7"} {
		if err := s.VerifyHostname(h); err != nil {
			t.Errorf("serving certificate: %v", err)
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not chain to the CA: %v", err)
	}
}

func TestSignNodeCSRsRefuses(t *testing.T) {
	ca := newTestCA(t)
	node := pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup}}
	good := func() NodeBootstrapRequest {
		return NodeBootstrapRequest{NodeName: "n1",
			ClientCSR:  csrFor(t, &x509.CertificateRequest{Subject: node}),
			ServingCSR: csrFor(t, &x509.CertificateRequest{Subject: node, DNSNames: []string{"n1"}})}
	}
	if _, err := ca.SignNodeCSRs(good(), 0); err != nil {
		t.Fatalf("good request refused: %v", err)
	}
	u, _ := url.Parse("spiffe://cluster/admin")
	tests := map[string]func(*NodeBootstrapRequest){
		"masters": func(r *NodeBootstrapRequest) {
			r.ClientCSR = csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}}})
		},
		"node in masters": func(r *NodeBootstrapRequest) {
			r.ClientCSR = csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup, "system:masters"}}})
		},
		"other node": func(r *NodeBootstrapRequest) { r.NodeName = "n2" },
		"server subject": func(r *NodeBootstrapRequest) {
			r.ServingCSR = csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "skiff-server:n1", Organization: []string{ServerOrganization}}, DNSNames: []string{"n1"}})
		},
		"client with SANs": func(r *NodeBootstrapRequest) {
			r.ClientCSR = csrFor(t, &x509.CertificateRequest{Subject: node, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
		},
		"serving with URI": func(r *NodeBootstrapRequest) {
			r.ServingCSR = csrFor(t, &x509.CertificateRequest{Subject: node, URIs: []*url.URL{u}})
		},
		"extra subject": func(r *NodeBootstrapRequest) {
			r.ClientCSR = csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: node.CommonName, Organization: node.Organization, OrganizationalUnit: []string{"x"}}})
		},
		"not a CSR": func(r *NodeBootstrapRequest) {
			r.ClientCSR = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
		},
		"bad signature": func(r *NodeBootstrapRequest) {
			b, _ := pem.Decode([]byte(r.ClientCSR))
			b.Bytes[len(b.Bytes)-3] ^= 0xff
			r.ClientCSR = string(pem.EncodeToMemory(b))
		},
	}
	for name, mutate := range tests {
		r := good()
		mutate(&r)
		if _, err := ca.SignNodeCSRs(r, 0); !errors.Is(err, ErrNodeCSR) {
			t.Errorf("%s: %v, want ErrNodeCSR", name, err)
		}
	}
}

func TestAgentToken(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
	id, secret, err := GenerateBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	bt := id + "." + secret
	if !IsAgentSecret(bt) {
		t.Fatalf("generated bootstrap token %q is not <6>.<16> of [a-z0-9]", bt)
	}
	tok := FormatAgentToken(ca, bt)
	hash, got, err := ParseToken(tok)
	if err != nil || hash != CAHash(ca) || got != bt {
		t.Fatalf("ParseToken(%q) = %q, %q, %v", tok, hash, got, err)
	}
	// A generated server secret is no agent token.
	s, err := GenerateSecret()
	if err != nil || IsAgentSecret(s) {
		t.Fatalf("server secret %q taken for an agent token (%v)", s, err)
	}
	if _, _, err := ParseToken("K10" + CAHash(ca) + "::ABCDEF.0123456789abcdef"); err == nil {
		t.Errorf("upper-case bootstrap token accepted")
	}
}
