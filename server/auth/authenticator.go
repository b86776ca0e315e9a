package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/server/pki"
)

const (
	// BootstrapUserPrefix starts the user name of a bootstrap-token user,
	// system:bootstrap:<token-id>.
	BootstrapUserPrefix    = "system:bootstrap:"
	bootstrapperGroupScope = GroupBootstrappers + ":"
)

// TokenSecrets looks up Secrets; the server backs it with the state store.
// The returned Secret is shared and must not be modified.
type TokenSecrets interface {
	GetSecret(namespace, name string) (*corev1.Secret, bool)
}

// AuthenticatorConfig configures an Authenticator.
type AuthenticatorConfig struct {
	// JoinSecret is the cluster join-token secret; either the bare secret or
	// the full K10 token may be given. Empty disables join-token login.
	JoinSecret string
	// CAHash, when set, is the hash of this cluster's CA: a full K10 token
	// pinning another CA is refused even if its secret matches. It defaults
	// to the hash in JoinSecret when that is a full token.
	CAHash string
	// Secrets holds bootstrap-token Secrets; nil disables bootstrap tokens.
	Secrets TokenSecrets
	// ServiceAccountTokens verifies service-account JWTs and Objects
	// looks up what they are bound to; nil disables them.
	ServiceAccountTokens *ServiceAccountTokens
	Objects              ServiceAccountObjects
	// Now returns the current time (time.Now if nil), for token expiry.
	Now    func() time.Time
	Logger *slog.Logger
}

// Authenticator identifies the user behind an API request.
type Authenticator struct {
	joinDigest [sha256.Size]byte
	hasJoin    bool
	caHash     string
	secrets    TokenSecrets
	saTokens   *ServiceAccountTokens
	objects    ServiceAccountObjects
	verified   *verifiedCache
	now        func() time.Time
	log        *slog.Logger
}

// NewAuthenticator returns an Authenticator for cfg.
func NewAuthenticator(cfg AuthenticatorConfig) *Authenticator {
	a := &Authenticator{
		caHash:   strings.ToLower(cfg.CAHash),
		secrets:  cfg.Secrets,
		saTokens: cfg.ServiceAccountTokens,
		objects:  cfg.Objects,
		verified: newVerifiedCache(),
		now:      cfg.Now,
		log:      cfg.Logger,
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("component", "auth")
	if cfg.JoinSecret != "" {
		secret := cfg.JoinSecret
		if hash, s, err := pki.ParseToken(cfg.JoinSecret); err == nil {
			secret = s
			if a.caHash == "" {
				a.caHash = hash
			}
		}
		a.joinDigest = sha256.Sum256([]byte(secret))
		a.hasJoin = true
	}
	return a
}

// Authenticate identifies the user of r, trying in order:
//
//   - a client certificate verified by the TLS layer against the cluster CA
//     (r.TLS.VerifiedChains): the user is the CN, the groups the O values
//     plus system:authenticated;
//   - an "Authorization: Bearer" token: the cluster join secret (user
//     skiff:joiner) or a Kubernetes bootstrap token (user
//     system:bootstrap:<id>) or a service-account JWT (user
//     system:serviceaccount:<ns>:<name>, satoken_authn.go);
//   - without an Authorization header, the same kinds of token in a
//     WebSocket upgrade's base64url.bearer.authorization.k8s.io.<token>
//     subprotocol, as kube-apiserver accepts it (browsers cannot set
//     headers on a WebSocket);
//   - no credentials at all: system:anonymous in system:unauthenticated.
//
// Credentials that are present but not valid give ErrUnauthenticated; the
// reason is logged, not returned, so that a client cannot probe which
// tokens exist.
func (a *Authenticator) Authenticate(r *http.Request) (*User, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		if leaf.Subject.CommonName == "" {
			a.log.Info("rejected client certificate without common name", "serial", leaf.SerialNumber)
			return nil, ErrUnauthenticated
		}
		return &User{
			Name:   leaf.Subject.CommonName,
			Groups: withAuthenticated(leaf.Subject.Organization),
		}, nil
	}
	header := r.Header.Get("Authorization")
	if header == "" {
		return a.webSocketUser(r)
	}
	scheme, token, _ := strings.Cut(header, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		a.log.Debug("rejected Authorization header", "scheme", scheme)
		return nil, ErrUnauthenticated
	}
	return a.tokenUser(token)
}

// webSocketUser authenticates a request without an Authorization header:
// a WebSocket upgrade may carry a bearer token in its subprotocols
// (websocket_token.go); with a valid one, that protocol is removed from
// r's Sec-WebSocket-Protocol header, so that the token is neither echoed
// back nor forwarded (to a kubelet by the exec and attach proxies). Any
// other request is system:anonymous.
func (a *Authenticator) webSocketUser(r *http.Request) (*User, error) {
	token, others, found, err := webSocketBearerToken(r)
	if err != nil {
		a.log.Debug("rejected websocket bearer token subprotocol", "err", err)
		return nil, ErrUnauthenticated
	}
	if !found {
		return &User{Name: UserAnonymous, Groups: []string{GroupUnauthenticated}}, nil
	}
	u, err := a.tokenUser(token)
	if err != nil {
		return nil, err
	}
	r.Header.Set(secWebSocketProtocol, strings.Join(others, ", "))
	return u, nil
}

// tokenUser identifies the user of a bearer token.
func (a *Authenticator) tokenUser(token string) (*User, error) {
	if u, ok := a.joinUser(token); ok {
		return u, nil
	}
	if id, secret, ok := parseBootstrapToken(token); ok {
		return a.bootstrapUser(id, secret)
	}
	if LooksLikeJWT(token) {
		return a.serviceAccountUser(token)
	}
	a.log.Debug("rejected bearer token of unknown kind")
	return nil, ErrUnauthenticated
}

// joinUser matches token against the join secret in constant time (the
// digests have a fixed length, so not even the secret's length leaks).
func (a *Authenticator) joinUser(token string) (*User, bool) {
	if !a.hasJoin {
		return nil, false
	}
	hash, secret, err := pki.ParseToken(token)
	if err != nil {
		return nil, false
	}
	digest := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(digest[:], a.joinDigest[:]) != 1 {
		return nil, false
	}
	if hash != "" && a.caHash != "" && subtle.ConstantTimeCompare([]byte(hash), []byte(a.caHash)) != 1 {
		a.log.Info("rejected join token that pins another CA")
		return nil, false
	}
	return &User{Name: UserJoiner, Groups: []string{GroupBootstrappers, GroupAuthenticated}}, true
}

// withAuthenticated returns a copy of groups with system:authenticated
// appended unless already present.
func withAuthenticated(groups []string) []string {
	out := make([]string, 0, len(groups)+1)
	seen := false
	for _, g := range groups {
		seen = seen || g == GroupAuthenticated
		out = append(out, g)
	}
	if !seen {
		out = append(out, GroupAuthenticated)
	}
	return out
}
