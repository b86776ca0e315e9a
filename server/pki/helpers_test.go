package pki

import (
	"crypto/x509"
	"testing"
)

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := GenerateCA("skiff-ca-test")
	if err != nil {
		t.Fatalf("GenerateCA: %v", err)
	}
	return ca
}

func mustParseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := parseCert(certPEM)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return c
}
