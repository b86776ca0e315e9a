package auth

import (
	"crypto/subtle"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Kubernetes bootstrap tokens: "<id>.<secret>", stored in the Secret
// kube-system/bootstrap-token-<id> of type bootstrap.kubernetes.io/token.
const (
	bootstrapTokenNamespace    = "kube-system"
	bootstrapTokenSecretPrefix = "bootstrap-token-"
	bootstrapTokenKeyID        = "token-id"
	bootstrapTokenKeySecret    = "token-secret"
	bootstrapTokenKeyExpires   = "expiration"
	bootstrapTokenKeyUsageAuth = "usage-bootstrap-authentication"
	bootstrapTokenKeyGroups    = "auth-extra-groups"
)

var (
	bootstrapTokenRE = regexp.MustCompile(`\A([a-z0-9]{6})\.([a-z0-9]{16})\z`)
	// Extra groups must stay inside system:bootstrappers:, as in Kubernetes.
	bootstrapGroupRE = regexp.MustCompile(`\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\z`)
)

func parseBootstrapToken(token string) (id, secret string, ok bool) {
	m := bootstrapTokenRE.FindStringSubmatch(token)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// bootstrapUser checks a bootstrap token against its Secret.
func (a *Authenticator) bootstrapUser(id, secret string) (*User, error) {
	reject := func(reason string) (*User, error) {
		a.log.Info("rejected bootstrap token", "tokenID", id, "reason", reason)
		return nil, ErrUnauthenticated
	}
	if a.secrets == nil {
		return reject("bootstrap tokens are not enabled")
	}
	name := bootstrapTokenSecretPrefix + id
	s, ok := a.secrets.GetSecret(bootstrapTokenNamespace, name)
	if !ok {
		return reject("no secret " + bootstrapTokenNamespace + "/" + name)
	}
	if s.Type != corev1.SecretTypeBootstrapToken {
		return reject("secret has type " + string(s.Type))
	}
	if s.DeletionTimestamp != nil {
		return reject("secret is being deleted")
	}
	if secretValue(s, bootstrapTokenKeyID) != id {
		return reject("token-id does not match the secret name")
	}
	want := secretValue(s, bootstrapTokenKeySecret)
	if subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		return reject("wrong token secret")
	}
	if exp := secretValue(s, bootstrapTokenKeyExpires); exp != "" {
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil {
			return reject("unparsable expiration " + exp)
		}
		if !a.now().Before(t) {
			return reject("expired at " + exp)
		}
	}
	if secretValue(s, bootstrapTokenKeyUsageAuth) != "true" {
		return reject("not usable for authentication")
	}
	groups := []string{GroupBootstrappers}
	if extra := secretValue(s, bootstrapTokenKeyGroups); extra != "" {
		for _, g := range strings.Split(extra, ",") {
			g = strings.TrimSpace(g)
			if !bootstrapGroupRE.MatchString(g) {
				return reject("extra group " + g + " is outside " + bootstrapperGroupScope)
			}
			groups = append(groups, g)
		}
	}
	groups = append(groups, GroupAuthenticated)
	return &User{Name: BootstrapUserPrefix + id, Groups: groups}, nil
}

// secretValue reads key from Data, falling back to StringData for Secrets
// stored without the write-time conversion.
func secretValue(s *corev1.Secret, key string) string {
	if v, ok := s.Data[key]; ok {
		return string(v)
	}
	return s.StringData[key]
}

// Bootstrap-token Secret fields read by tools (skiff token list).
const (
	BootstrapTokenNamespace      = bootstrapTokenNamespace
	BootstrapTokenSecretPrefix   = bootstrapTokenSecretPrefix
	bootstrapTokenKeyDescription = "description"
)

// NewBootstrapTokenSecret is the Secret kube-system/bootstrap-token-<id>
// that makes id.secret a bootstrap token usable for authentication (a
// Skiff agent token), expiring at expires unless that is zero.
func NewBootstrapTokenSecret(id, secret, description string, expires time.Time) *corev1.Secret {
	data := map[string][]byte{
		bootstrapTokenKeyID:        []byte(id),
		bootstrapTokenKeySecret:    []byte(secret),
		bootstrapTokenKeyUsageAuth: []byte("true"),
	}
	if description != "" {
		data[bootstrapTokenKeyDescription] = []byte(description)
	}
	if !expires.IsZero() {
		data[bootstrapTokenKeyExpires] = []byte(expires.UTC().Format(time.RFC3339))
	}
	s := &corev1.Secret{Type: corev1.SecretTypeBootstrapToken, Data: data}
	s.APIVersion, s.Kind = "v1", "Secret"
	s.Namespace, s.Name = bootstrapTokenNamespace, bootstrapTokenSecretPrefix+id
	return s
}

// BootstrapTokenInfo describes a bootstrap-token Secret without its secret.
type BootstrapTokenInfo struct {
	ID          string
	Description string
	// Expires is zero for a token that does not expire.
	Expires time.Time
	Usages  []string
	Groups  []string
}

// BootstrapTokenInfoOf reads a bootstrap-token Secret; false for a Secret
// that is not one.
func BootstrapTokenInfoOf(s *corev1.Secret) (BootstrapTokenInfo, bool) {
	if s.Type != corev1.SecretTypeBootstrapToken || s.Namespace != bootstrapTokenNamespace {
		return BootstrapTokenInfo{}, false
	}
	id := secretValue(s, bootstrapTokenKeyID)
	if s.Name != bootstrapTokenSecretPrefix+id {
		return BootstrapTokenInfo{}, false
	}
	info := BootstrapTokenInfo{ID: id, Description: secretValue(s, bootstrapTokenKeyDescription)}
	if exp := secretValue(s, bootstrapTokenKeyExpires); exp != "" {
		// An unparsable expiration is refused at login; show it as long past.
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil {
			t = time.Unix(0, 0)
		}
		info.Expires = t
	}
	for k, v := range s.Data {
		if u, ok := strings.CutPrefix(k, "usage-bootstrap-"); ok && string(v) == "true" {
			info.Usages = append(info.Usages, u)
		}
	}
	slices.Sort(info.Usages)
	if extra := secretValue(s, bootstrapTokenKeyGroups); extra != "" {
		for _, g := range strings.Split(extra, ",") {
			info.Groups = append(info.Groups, strings.TrimSpace(g))
		}
	}
	return info, true
}
