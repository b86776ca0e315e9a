package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// ServiceAccountKeyFile is the base name, in a master's TLS directory, of
// the key that signs service-account tokens.
const ServiceAccountKeyFile = "service-account.key"

// saKeyInfo separates the derived service-account key from any other use
// of the CA key (HKDF "info").
const saKeyInfo = "skiff service-account token signing key v1"

// GenerateServiceAccountKey returns a new ECDSA P-256 private key, PEM
// encoded (SEC1), for signing service-account tokens.
func GenerateServiceAccountKey() ([]byte, error) {
	k, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	return encodeKey(k)
}

// DeriveServiceAccountKey computes an ECDSA P-256 service-account signing
// key from the cluster CA's private key (HKDF-SHA256 over its DER
// encoding). Every master holds the CA key, so masters of a cluster made
// before service-account keys existed all derive the same key without
// talking to each other. New clusters use GenerateServiceAccountKey.
func DeriveServiceAccountKey(caKeyPEM []byte) ([]byte, error) {
	b, _ := pem.Decode(caKeyPEM)
	if b == nil {
		return nil, errors.New("derive service-account key: no PEM block in the CA key")
	}
	n := elliptic.P256().Params().N
	nMinus1 := new(big.Int).Sub(n, big.NewInt(1))
	// 48 bytes reduced modulo n-1 (then +1) give a scalar in [1, n-1]
	// with negligible bias (FIPS 186-5 A.2.1).
	seed, err := hkdf.Key(sha256.New, b.Bytes, nil, saKeyInfo, 48)
	if err != nil {
		return nil, fmt.Errorf("derive service-account key: %w", err)
	}
	d := new(big.Int).SetBytes(seed)
	d.Mod(d, nMinus1).Add(d, big.NewInt(1))
	raw := make([]byte, 32)
	d.FillBytes(raw)
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("derive service-account key: %w", err)
	}
	return encodeKey(k)
}

// ParseServiceAccountKey parses a PEM private key (EC or RSA, SEC1, PKCS#1
// or PKCS#8) that signs service-account tokens.
func ParseServiceAccountKey(keyPEM []byte) (crypto.Signer, error) {
	k, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	return k, nil
}

// PublicKeyID is the key ID Kubernetes gives a service-account signing
// key: the unpadded base64url SHA-256 of its PKIX public key.
func PublicKeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("key ID: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}
