package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// Service-account token defaults, as kube-apiserver's.
const (
	// DefaultIssuer is the "iss" of bound tokens (--service-account-issuer).
	DefaultIssuer = "https://kubernetes.default.svc.cluster.local"
	// LegacyIssuer is the "iss" of tokens kept in Secrets of type
	// kubernetes.io/service-account-token.
	LegacyIssuer = "kubernetes/serviceaccount"
	// MinTokenExpiration is the shortest lifetime a TokenRequest may ask.
	MinTokenExpiration = 10 * time.Minute
	// DefaultMaxTokenExpiration bounds the lifetime a TokenRequest may ask
	// (--service-account-max-token-expiration).
	DefaultMaxTokenExpiration = 48 * time.Hour
	// DefaultTokenExpiration is the lifetime of a TokenRequest that names
	// none.
	DefaultTokenExpiration = time.Hour
	// tokenLeeway is the clock skew allowed on exp, nbf and iat.
	tokenLeeway = time.Minute
)

// ServiceAccount user names and groups.
const (
	ServiceAccountUserPrefix = "system:serviceaccount:"
	GroupServiceAccounts     = "system:serviceaccounts"
)

// ServiceAccountUser is the user name of service account ns/name.
func ServiceAccountUser(namespace, name string) string {
	return ServiceAccountUserPrefix + namespace + ":" + name
}

// ObjectRef names a stored object a token is bound to.
type ObjectRef struct {
	Name string    `json:"name"`
	UID  types.UID `json:"uid"`
}

// kubernetesClaims is the "kubernetes.io" private claim of bound tokens,
// with Kubernetes' field names.
type kubernetesClaims struct {
	Namespace      string           `json:"namespace"`
	ServiceAccount ObjectRef        `json:"serviceaccount"`
	Pod            *ObjectRef       `json:"pod,omitempty"`
	Secret         *ObjectRef       `json:"secret,omitempty"`
	Node           *ObjectRef       `json:"node,omitempty"`
	WarnAfter      *jwt.NumericDate `json:"warnafter,omitempty"`
}

type boundClaims struct {
	Kubernetes *kubernetesClaims `json:"kubernetes.io,omitempty"`
}

// legacyClaims are the private claims of Secret-held tokens.
type legacyClaims struct {
	Namespace          string `json:"kubernetes.io/serviceaccount/namespace,omitempty"`
	SecretName         string `json:"kubernetes.io/serviceaccount/secret.name,omitempty"`
	ServiceAccountName string `json:"kubernetes.io/serviceaccount/service-account.name,omitempty"`
	ServiceAccountUID  string `json:"kubernetes.io/serviceaccount/service-account.uid,omitempty"`
}

// TokenSpec is what a bound token says. A token is bound to at most one
// of Pod (Node then names the pod's node), Secret or Node.
type TokenSpec struct {
	Namespace         string
	ServiceAccount    string
	ServiceAccountUID types.UID
	// Audiences: the API audiences when empty.
	Audiences  []string
	Expiration time.Duration
	Pod        *ObjectRef
	Secret     *ObjectRef
	Node       *ObjectRef
}

// TokenClaims is what a verified service-account token says.
type TokenClaims struct {
	Legacy            bool
	Namespace         string
	ServiceAccount    string
	ServiceAccountUID types.UID
	Pod               *ObjectRef
	Secret            *ObjectRef
	Node              *ObjectRef
	Expiry            time.Time // zero for legacy tokens
	// ID is the token's "jti" (empty for legacy tokens).
	ID string
}

// TokenConfig configures ServiceAccountTokens.
type TokenConfig struct {
	// Issuer of bound tokens (DefaultIssuer if empty).
	Issuer string
	// APIAudiences: tokens for one of these authenticate to the API
	// (the issuer if empty).
	APIAudiences []string
	// MaxExpiration bounds requested lifetimes (DefaultMaxTokenExpiration).
	MaxExpiration time.Duration
}

// ServiceAccountTokens signs and verifies service-account JWTs with the
// cluster's service-account key (ES256 for ECDSA P-256, RS256 for RSA).
type ServiceAccountTokens struct {
	signer jose.Signer
	pub    crypto.PublicKey
	alg    jose.SignatureAlgorithm
	kid    string
	cfg    TokenConfig
}

// NewServiceAccountTokens returns a signer and verifier for key.
func NewServiceAccountTokens(key crypto.Signer, cfg TokenConfig) (*ServiceAccountTokens, error) {
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuer
	}
	if len(cfg.APIAudiences) == 0 {
		cfg.APIAudiences = []string{cfg.Issuer}
	}
	if cfg.MaxExpiration <= 0 {
		cfg.MaxExpiration = DefaultMaxTokenExpiration
	}
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("service-account key: only ECDSA P-256 or RSA keys are supported")
		}
		alg = jose.ES256
	case *rsa.PrivateKey:
		alg = jose.RS256
	default:
		return nil, fmt.Errorf("service-account key: unsupported key type %T", key)
	}
	pub := key.Public()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	sum := sha256.Sum256(der)
	kid := base64.RawURLEncoding.EncodeToString(sum[:])
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("service-account signer: %w", err)
	}
	return &ServiceAccountTokens{signer: signer, pub: pub, alg: alg, kid: kid, cfg: cfg}, nil
}

// Issuer is the "iss" of bound tokens.
func (t *ServiceAccountTokens) Issuer() string { return t.cfg.Issuer }

// APIAudiences are the audiences the API accepts.
func (t *ServiceAccountTokens) APIAudiences() []string {
	return append([]string(nil), t.cfg.APIAudiences...)
}

// MaxExpiration bounds requested token lifetimes.
func (t *ServiceAccountTokens) MaxExpiration() time.Duration { return t.cfg.MaxExpiration }

// Issue signs a bound token valid from now for spec.Expiration.
func (t *ServiceAccountTokens) Issue(spec TokenSpec, now time.Time) (string, time.Time, error) {
	if spec.Namespace == "" || spec.ServiceAccount == "" || spec.ServiceAccountUID == "" {
		return "", time.Time{}, errors.New("issue token: namespace, service account and its UID are required")
	}
	if spec.Expiration <= 0 {
		spec.Expiration = DefaultTokenExpiration
	}
	aud := spec.Audiences
	if len(aud) == 0 {
		aud = t.cfg.APIAudiences
	}
	now = now.UTC().Truncate(time.Second)
	exp := now.Add(spec.Expiration)
	std := jwt.Claims{
		Issuer:    t.cfg.Issuer,
		Subject:   ServiceAccountUser(spec.Namespace, spec.ServiceAccount),
		Audience:  jwt.Audience(aud),
		Expiry:    jwt.NewNumericDate(exp),
		NotBefore: jwt.NewNumericDate(now),
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        string(uuid.NewUUID()),
	}
	priv := boundClaims{Kubernetes: &kubernetesClaims{
		Namespace:      spec.Namespace,
		ServiceAccount: ObjectRef{Name: spec.ServiceAccount, UID: spec.ServiceAccountUID},
		Pod:            spec.Pod,
		Secret:         spec.Secret,
		Node:           spec.Node,
	}}
	tok, err := jwt.Signed(t.signer).Claims(std).Claims(priv).Serialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return tok, exp, nil
}

// IssueLegacy signs the never-expiring token kept in a Secret of type
// kubernetes.io/service-account-token; it is valid while the Secret holds
// it and the service account exists.
func (t *ServiceAccountTokens) IssueLegacy(namespace, serviceAccount string, uid types.UID, secret string) (string, error) {
	std := jwt.Claims{Issuer: LegacyIssuer, Subject: ServiceAccountUser(namespace, serviceAccount)}
	priv := legacyClaims{Namespace: namespace, SecretName: secret, ServiceAccountName: serviceAccount, ServiceAccountUID: string(uid)}
	tok, err := jwt.Signed(t.signer).Claims(std).Claims(priv).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return tok, nil
}

// LooksLikeJWT reports whether token has the shape of a compact JWS.
func LooksLikeJWT(token string) bool {
	return strings.Count(token, ".") == 2 && strings.HasPrefix(token, "eyJ")
}

// ErrInvalidToken wraps every reason Verify refuses a token.
var ErrInvalidToken = errors.New("invalid service-account token")

// Verify checks the signature, issuer, audience and lifetime of a
// service-account token and returns what it says. It does not look at
// stored objects (the Authenticator does).
func (t *ServiceAccountTokens) Verify(token string, now time.Time) (*TokenClaims, error) {
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{t.alg})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	var (
		std    jwt.Claims
		bound  boundClaims
		legacy legacyClaims
	)
	if err := parsed.Claims(t.pub, &std, &bound, &legacy); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	switch std.Issuer {
	case LegacyIssuer:
		if legacy.Namespace == "" || legacy.ServiceAccountName == "" || legacy.SecretName == "" ||
			std.Subject != ServiceAccountUser(legacy.Namespace, legacy.ServiceAccountName) {
			return nil, fmt.Errorf("%w: malformed legacy claims", ErrInvalidToken)
		}
		return &TokenClaims{Legacy: true, Namespace: legacy.Namespace, ServiceAccount: legacy.ServiceAccountName,
			ServiceAccountUID: types.UID(legacy.ServiceAccountUID), Secret: &ObjectRef{Name: legacy.SecretName}}, nil
	case t.cfg.Issuer:
	default:
		return nil, fmt.Errorf("%w: issuer %q is not %q", ErrInvalidToken, std.Issuer, t.cfg.Issuer)
	}
	if std.Expiry == nil {
		return nil, fmt.Errorf("%w: no expiry", ErrInvalidToken)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience(t.cfg.APIAudiences), Time: now}, tokenLeeway); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	k := bound.Kubernetes
	if k == nil || k.Namespace == "" || k.ServiceAccount.Name == "" || k.ServiceAccount.UID == "" ||
		std.Subject != ServiceAccountUser(k.Namespace, k.ServiceAccount.Name) {
		return nil, fmt.Errorf("%w: malformed kubernetes.io claims", ErrInvalidToken)
	}
	return &TokenClaims{Namespace: k.Namespace, ServiceAccount: k.ServiceAccount.Name, ServiceAccountUID: k.ServiceAccount.UID,
		Pod: k.Pod, Secret: k.Secret, Node: k.Node, Expiry: std.Expiry.Time(), ID: std.ID}, nil
}

// OpenIDConfiguration is the /.well-known/openid-configuration document
// of the issuer, whose keys are at jwksURI.
func (t *ServiceAccountTokens) OpenIDConfiguration(jwksURI string) ([]byte, error) {
	return json.Marshal(map[string]any{
		"issuer":                                t.cfg.Issuer,
		"jwks_uri":                              jwksURI,
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(t.alg)},
	})
}

// JWKS is the /openid/v1/jwks document: the public verification key.
func (t *ServiceAccountTokens) JWKS() ([]byte, error) {
	return json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: t.pub, KeyID: t.kid, Algorithm: string(t.alg), Use: "sig",
	}}})
}
