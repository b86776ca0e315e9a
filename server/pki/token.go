package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// Join tokens have the k3s shape K10<sha256 of the CA PEM, hex>::server:<secret>
// (the server token, which joins masters) or K10<hash>::<id>.<secret> (an
// agent token: a Kubernetes bootstrap token, which joins nodes only). The
// hash lets a joiner check the cluster CA before it sends the secret.
const (
	tokenPrefix     = "K10"
	tokenSeparator  = "::"
	tokenServerUser = "server:"
	caHashHexLen    = sha256.Size * 2
	secretBytes     = 32
)

// ErrInvalidToken is wrapped by every ParseToken error.
var ErrInvalidToken = errors.New("invalid join token")

// ErrAgentToken means an agent token was given where the server token is
// needed (a master joining): agent tokens join nodes only.
var ErrAgentToken = errors.New("this is an agent token, which joins nodes only: a master joins with the server token, <data-dir>/token of a master")

// bootstrapTokenRE is a Kubernetes bootstrap token, <id>.<secret>.
var bootstrapTokenRE = regexp.MustCompile(`\A[a-z0-9]{6}\.[a-z0-9]{16}\z`)

// IsAgentSecret reports whether a token's secret (as ParseToken returns it)
// is a bootstrap token <id>.<secret>, that is whether the token is an agent
// token rather than the server token.
func IsAgentSecret(secret string) bool { return bootstrapTokenRE.MatchString(secret) }

// FormatAgentToken returns the agent token for the CA and the bootstrap
// token id.secret.
func FormatAgentToken(caPEM []byte, bootstrapToken string) string {
	return tokenPrefix + CAHash(caPEM) + tokenSeparator + bootstrapToken
}

// GenerateBootstrapToken returns a new bootstrap token's id (6 characters)
// and secret (16 characters), both from [a-z0-9], as Kubernetes makes them.
func GenerateBootstrapToken() (id, secret string, err error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 22)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generate bootstrap token: %w", err)
	}
	out := make([]byte, len(b))
	for i, c := range b {
		// 256 is not a multiple of 36: rejection sampling would remove the
		// small bias; reading again for the few biased bytes keeps it exact.
		for c >= 252 {
			var one [1]byte
			if _, err := rand.Read(one[:]); err != nil {
				return "", "", fmt.Errorf("generate bootstrap token: %w", err)
			}
			c = one[0]
		}
		out[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(out[:6]), string(out[6:]), nil
}

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
	if IsAgentSecret(creds) {
		return hash, creds, nil
	}
	secret, ok = strings.CutPrefix(creds, tokenServerUser)
	if !ok {
		return "", "", fmt.Errorf("%w: expected %q or an agent token <id>.<secret> after the CA hash", ErrInvalidToken, tokenSeparator+tokenServerUser)
	}
	if secret == "" {
		return "", "", fmt.Errorf("%w: empty secret", ErrInvalidToken)
	}
	if IsAgentSecret(secret) {
		// Callers tell the two kinds apart by the secret's form alone
		// (IsAgentSecret): a server token holding an agent-shaped secret
		// would be taken for an agent token. Masters never make one.
		return "", "", fmt.Errorf("%w: the server token's secret has the form of an agent token <id>.<secret>", ErrInvalidToken)
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
