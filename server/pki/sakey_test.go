package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"testing"
)

func TestServiceAccountKey(t *testing.T) {
	a, err := GenerateServiceAccountKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateServiceAccountKey()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two generated keys are equal")
	}
	k, err := ParseServiceAccountKey(a)
	if err != nil {
		t.Fatal(err)
	}
	if ec, ok := k.(*ecdsa.PrivateKey); !ok || ec.Curve != elliptic.P256() {
		t.Fatalf("key %T, want ECDSA P-256", k)
	}
}

// Masters of a cluster older than service-account keys derive the same key
// from the CA key, and another CA gives another key.
func TestDeriveServiceAccountKey(t *testing.T) {
	ca, err := GenerateCA("c")
	if err != nil {
		t.Fatal(err)
	}
	x, err := DeriveServiceAccountKey(ca.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	y, err := DeriveServiceAccountKey(append([]byte(nil), ca.KeyPEM...))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatal("derivation is not deterministic")
	}
	other, _ := GenerateCA("c")
	z, err := DeriveServiceAccountKey(other.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(x, z) {
		t.Fatal("two CAs derive the same key")
	}
	k, err := ParseServiceAccountKey(x)
	if err != nil {
		t.Fatal(err)
	}
	if k.Public().(*ecdsa.PublicKey).Equal(ca.Key.Public()) {
		t.Fatal("derived key equals the CA key")
	}
	if _, err := DeriveServiceAccountKey([]byte("junk")); err == nil {
		t.Fatal("junk accepted")
	}
	id1, _ := PublicKeyID(k.Public())
	id2, _ := PublicKeyID(k.Public())
	if id1 == "" || id1 != id2 {
		t.Fatalf("key IDs %q %q", id1, id2)
	}
}
