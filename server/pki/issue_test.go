package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"testing"
	"time"
)

func TestIssueServer(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM, err := ca.IssueServer("m1", []string{"m1.example.com", "10.0.0.7", "localhost"}, []net.IP{net.ParseIP("192.168.1.5"), net.ParseIP("fd00::1"), net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	c := mustParseCert(t, certPEM)
	if c.Subject.CommonName != "skiff-server:m1" {
		t.Fatalf("CN = %q, want skiff-server:m1", c.Subject.CommonName)
	}
	if !slices.Equal(c.Subject.Organization, []string{"skiff:servers"}) {
		t.Fatalf("O = %q, want [skiff:servers]", c.Subject.Organization)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("ExtKeyUsage = %v, want ServerAuth+ClientAuth", c.ExtKeyUsage)
	}
	if c.IsCA {
		t.Fatal("server certificate is a CA")
	}
	wantDNS := []string{"m1.example.com", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if !slices.Equal(c.DNSNames, wantDNS) {
		t.Fatalf("DNSNames = %q, want %q", c.DNSNames, wantDNS)
	}
	var gotIPs []string
	for _, ip := range c.IPAddresses {
		gotIPs = append(gotIPs, ip.String())
	}
	wantIPs := []string{"10.0.0.7", "192.168.1.5", "fd00::1", "127.0.0.1"}
	if !slices.Equal(gotIPs, wantIPs) {
		t.Fatalf("IPAddresses = %q, want %q", gotIPs, wantIPs)
	}
	if days := c.NotAfter.Sub(time.Now()).Hours() / 24; days < 364 || days > 366 {
		t.Fatalf("valid for %.1f days, want 365", days)
	}
	for _, host := range []string{"m1.example.com", "kubernetes.default.svc", "127.0.0.1", "10.0.0.7", "fd00::1"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Fatalf("verify for %s usage %v: %v", host, usage, err)
			}
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "other.example.com"}); err == nil {
		t.Fatal("certificate verifies for a host it does not name")
	}
}

func TestIssueServerDefaultsOnly(t *testing.T) {
	ca := newTestCA(t)
	certPEM, _, err := ca.IssueServer("solo", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := mustParseCert(t, certPEM)
	if !slices.Equal(c.DNSNames, defaultServerDNSNames) {
		t.Fatalf("DNSNames = %q", c.DNSNames)
	}
	if len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("IPAddresses = %v, want [127.0.0.1]", c.IPAddresses)
	}
}

func TestIssueServerRejectsEmptyName(t *testing.T) {
	if _, _, err := newTestCA(t).IssueServer("", nil, nil); err == nil {
		t.Fatal("IssueServer with empty name succeeded")
	}
}

func TestIssueClient(t *testing.T) {
	ca := newTestCA(t)
	groups := []string{"system:masters", "team-a"}
	certPEM, keyPEM, err := ca.IssueClient("admin", groups)
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	groups[0] = "mutated" // the certificate must not depend on the caller's slice afterwards
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	c := mustParseCert(t, certPEM)
	if c.Subject.CommonName != "admin" {
		t.Fatalf("CN = %q", c.Subject.CommonName)
	}
	// DER sorts the values of one RDN set, so only membership is kept.
	if got := slices.Sorted(slices.Values(c.Subject.Organization)); !slices.Equal(got, []string{"system:masters", "team-a"}) {
		t.Fatalf("O = %q", c.Subject.Organization)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("ExtKeyUsage = %v, want ClientAuth only", c.ExtKeyUsage)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client certificate does not verify: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Fatal("client certificate verifies as a server certificate")
	}
	if _, _, err := ca.IssueClient("", nil); err == nil {
		t.Fatal("IssueClient with empty CN succeeded")
	}
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	ca := newTestCA(t)
	ca.Cert.NotAfter = time.Now().Add(24 * time.Hour) // only the in-memory bound matters for sign
	certPEM, _, err := ca.IssueClient("short", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := mustParseCert(t, certPEM); c.NotAfter.After(ca.Cert.NotAfter) {
		t.Fatalf("leaf NotAfter %v after CA NotAfter %v", c.NotAfter, ca.Cert.NotAfter)
	}
}
