package auth

import (
	"crypto/subtle"
	"regexp"
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
	return &User{Name: bootstrapUserPrefix + id, Groups: groups}, nil
}

// secretValue reads key from Data, falling back to StringData for Secrets
// stored without the write-time conversion.
func secretValue(s *corev1.Secret, key string) string {
	if v, ok := s.Data[key]; ok {
		return string(v)
	}
	return s.StringData[key]
}
