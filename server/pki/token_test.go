package pki

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestCAHash(t *testing.T) {
	// Known SHA-256 vectors.
	if got := CAHash([]byte("abc")); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("CAHash(abc) = %s", got)
	}
	if got := CAHash(nil); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatalf("CAHash(nil) = %s", got)
	}
}

func TestFormatAndParseToken(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
	tok := FormatToken(ca, "s3cr3t")
	want := "K10" + CAHash(ca) + "::server:s3cr3t"
	if tok != want {
		t.Fatalf("FormatToken = %q, want %q", tok, want)
	}
	hash, secret, err := ParseToken(tok + "\n")
	if err != nil {
		t.Fatalf("ParseToken: %v", err)
	}
	if hash != CAHash(ca) || secret != "s3cr3t" {
		t.Fatalf("ParseToken = (%q, %q)", hash, secret)
	}
	// Upper-case hex is normalised; a secret may hold colons.
	hash, secret, err = ParseToken("K10" + strings.ToUpper(CAHash(ca)) + "::server:a:b")
	if err != nil || hash != CAHash(ca) || secret != "a:b" {
		t.Fatalf("ParseToken(upper) = (%q, %q, %v)", hash, secret, err)
	}
}

func TestParseTokenBareSecret(t *testing.T) {
	hash, secret, err := ParseToken("  mysecret\n")
	if err != nil {
		t.Fatalf("ParseToken: %v", err)
	}
	if hash != "" || secret != "mysecret" {
		t.Fatalf("ParseToken = (%q, %q), want (\"\", mysecret)", hash, secret)
	}
}

func TestParseTokenRejects(t *testing.T) {
	h := CAHash([]byte("ca"))
	tests := map[string]string{
		"empty":        "",
		"blank":        " \n\t",
		"inner space":  "my secret",
		"no separator": "K10" + h,
		"short hash":   "K10abcd::server:x",
		"non-hex hash": "K10" + strings.Repeat("z", 64) + "::server:x",
		"wrong user":   "K10" + h + "::node:x",
		"empty secret": "K10" + h + "::server:",
		"missing user": "K10" + h + "::x",
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := ParseToken(tok)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("ParseToken(%q) err = %v, want ErrInvalidToken", tok, err)
			}
		})
	}
}

func TestGenerateSecret(t *testing.T) {
	a, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || len(raw) != 32 {
		t.Fatalf("secret %q is not 32 hex-encoded bytes (err %v)", a, err)
	}
	if a == b {
		t.Fatal("two secrets are equal")
	}
	// A generated secret survives a token round trip.
	if _, s, err := ParseToken(FormatToken([]byte("ca"), a)); err != nil || s != a {
		t.Fatalf("round trip = (%q, %v)", s, err)
	}
}
