package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Join tokens have the k3s shape K10<sha256 of the CA PEM, hex>::server:<secret>.
// The hash lets a joiner check the cluster CA before it sends the secret.
const (
	tokenPrefix     = "K10"
	tokenSeparator  = "::"
	tokenServerUser = "server:"
	caHashHexLen    = sha256.Size * 2
	secretBytes     = 32
)

// ErrInvalidToken is wrapped by every ParseToken error.
var ErrInvalidToken = errors.New("invalid join token")

// CAHash returns the hex SHA-256 of the CA certificate PEM bytes, as pinned
// by join tokens.
func CAHash(caPEM []byte) string {
	sum := sha256.Sum256(caPEM)
	return hex.EncodeToString(sum[:])
}

// FormatToken returns the full join token for the CA and secret.
func FormatToken(caPEM []byte, secret string) string {
	return tokenPrefix + CAHash(caPEM) + tokenSeparator + tokenServerUser + secret
}

// ParseToken splits a join token into the CA hash (lower-case hex) and the
// secret. A bare secret (anything not starting with K10) is accepted and
// gives an empty caHash. Surrounding white space, as left by a token file,
// is ignored.
func ParseToken(s string) (caHash, secret string, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "", fmt.Errorf("%w: empty token", ErrInvalidToken)
	}
	if strings.ContainsFunc(s, unicode.IsSpace) {
		return "", "", fmt.Errorf("%w: token contains white space", ErrInvalidToken)
	}
	if !strings.HasPrefix(s, tokenPrefix) {
		return "", s, nil
	}
	hash, creds, ok := strings.Cut(strings.TrimPrefix(s, tokenPrefix), tokenSeparator)
	if !ok {
		return "", "", fmt.Errorf("%w: expected K10<ca-hash>::server:<secret>, no %q found", ErrInvalidToken, tokenSeparator)
	}
	hash = strings.ToLower(hash)
	if len(hash) != caHashHexLen {
		return "", "", fmt.Errorf("%w: CA hash must be %d hex digits, got %d characters", ErrInvalidToken, caHashHexLen, len(hash))
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return "", "", fmt.Errorf("%w: CA hash is not hex", ErrInvalidToken)
	}
	secret, ok = strings.CutPrefix(creds, tokenServerUser)
	if !ok {
		return "", "", fmt.Errorf("%w: expected %q after the CA hash", ErrInvalidToken, tokenSeparator+tokenServerUser)
	}
	if secret == "" {
		return "", "", fmt.Errorf("%w: empty secret", ErrInvalidToken)
	}
	return hash, secret, nil
}

// GenerateSecret returns 32 random bytes, hex encoded.
func GenerateSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}
