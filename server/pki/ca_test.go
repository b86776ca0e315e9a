package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

func TestGenerateCA(t *testing.T) {
	ca := newTestCA(t)
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Fatalf("IsCA=%v BasicConstraintsValid=%v, want both true", c.IsCA, c.BasicConstraintsValid)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature; c.KeyUsage != want {
		t.Fatalf("KeyUsage = %v, want %v", c.KeyUsage, want)
	}
	if c.Subject.CommonName != "skiff-ca-test" {
		t.Fatalf("CN = %q", c.Subject.CommonName)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if years := c.NotAfter.Sub(time.Now()).Hours() / 24 / 365; years < 9.9 || years > 10.1 {
		t.Fatalf("CA valid for %.2f years, want 10", years)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Fatalf("CA is not self-signed: %v", err)
	}
	if !publicKeysEqual(c.PublicKey, ca.Key.Public()) {
		t.Fatal("Key does not match Cert")
	}
	if got := mustParseCert(t, ca.CertPEM); !got.Equal(c) {
		t.Fatal("CertPEM does not hold Cert")
	}
}

func TestGenerateCARejectsEmptyName(t *testing.T) {
	if _, err := GenerateCA(""); err == nil {
		t.Fatal("GenerateCA(\"\") succeeded")
	}
}

func TestLoadCARoundTrip(t *testing.T) {
	ca := newTestCA(t)
	got, err := LoadCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !got.Cert.Equal(ca.Cert) {
		t.Fatal("loaded certificate differs")
	}
	// The loaded CA can issue certificates that the original pool trusts.
	certPEM, _, err := got.IssueClient("alice", nil)
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	leaf := mustParseCert(t, certPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("certificate from loaded CA does not verify: %v", err)
	}
}

func TestLoadCAAcceptsPKCS8Key(t *testing.T) {
	ca := newTestCA(t)
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if _, err := LoadCA(ca.CertPEM, keyPEM); err != nil {
		t.Fatalf("LoadCA with PKCS#8 key: %v", err)
	}
}

func TestLoadCARejects(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	leafPEM, leafKey, err := ca.IssueClient("bob", nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		cert, key []byte
	}{
		{"key of another CA", ca.CertPEM, other.KeyPEM},
		{"not a CA", leafPEM, leafKey},
		{"garbage certificate", []byte("nope"), ca.KeyPEM},
		{"garbage key", ca.CertPEM, []byte("nope")},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := LoadCA(tt.cert, tt.key); err == nil {
				t.Fatal("LoadCA succeeded")
			}
		})
	}
}

func TestPoolHoldsOnlyTheCA(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	if _, err := ca.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err != nil {
		t.Fatalf("CA not in its pool: %v", err)
	}
	if _, err := other.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err == nil {
		t.Fatal("another CA verifies against the pool")
	}
}
