package auth

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type fakeSecrets map[string]*corev1.Secret

func (f fakeSecrets) GetSecret(namespace, name string) (*corev1.Secret, bool) {
	s, ok := f[namespace+"/"+name]
	return s, ok
}

var testNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// bootstrapSecret is a valid Secret for abcdef.0123456789abcdef; mutate
// modifies its data before it is stored.
func bootstrapSecret(mutate func(s *corev1.Secret)) fakeSecrets {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "bootstrap-token-abcdef"},
		Type:       corev1.SecretTypeBootstrapToken,
		Data: map[string][]byte{
			"token-id":                       []byte("abcdef"),
			"token-secret":                   []byte("0123456789abcdef"),
			"expiration":                     []byte(testNow.Add(time.Hour).Format(time.RFC3339)),
			"usage-bootstrap-authentication": []byte("true"),
			"usage-bootstrap-signing":        []byte("true"),
		},
	}
	if mutate != nil {
		mutate(s)
	}
	return fakeSecrets{"kube-system/bootstrap-token-abcdef": s}
}

func bootstrapAuthenticator(secrets TokenSecrets) *Authenticator {
	return NewAuthenticator(AuthenticatorConfig{
		JoinSecret: "cluster-join-secret",
		Secrets:    secrets,
		Now:        func() time.Time { return testNow },
	})
}

const validBootstrapToken = "abcdef.0123456789abcdef"

func TestBootstrapToken(t *testing.T) {
	a := bootstrapAuthenticator(bootstrapSecret(nil))
	u, err := a.Authenticate(newRequest(t, "Bearer "+validBootstrapToken))
	assertUser(t, u, err, "system:bootstrap:abcdef", "system:bootstrappers", "system:authenticated")
}

func TestBootstrapTokenExtraGroupsAndNoExpiry(t *testing.T) {
	a := bootstrapAuthenticator(bootstrapSecret(func(s *corev1.Secret) {
		delete(s.Data, "expiration")
		s.Data["auth-extra-groups"] = []byte("system:bootstrappers:kubeadm:default-node-token, system:bootstrappers:worker")
	}))
	u, err := a.Authenticate(newRequest(t, "Bearer "+validBootstrapToken))
	assertUser(t, u, err, "system:bootstrap:abcdef",
		"system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:bootstrappers:worker", "system:authenticated")
}

func TestBootstrapTokenStringData(t *testing.T) {
	a := bootstrapAuthenticator(bootstrapSecret(func(s *corev1.Secret) {
		s.StringData = map[string]string{}
		for k, v := range s.Data {
			s.StringData[k] = string(v)
		}
		s.Data = nil
	}))
	u, err := a.Authenticate(newRequest(t, "Bearer "+validBootstrapToken))
	assertUser(t, u, err, "system:bootstrap:abcdef", "system:bootstrappers", "system:authenticated")
}

func TestBootstrapTokenRejected(t *testing.T) {
	tests := map[string]struct {
		token   string
		secrets TokenSecrets
	}{
		"wrong secret": {"abcdef.0123456789abcdee", bootstrapSecret(nil)},
		"unknown id":   {"zzzzzz.0123456789abcdef", bootstrapSecret(nil)},
		"no store":     {validBootstrapToken, nil},
		"upper case":   {"ABCDEF.0123456789ABCDEF", bootstrapSecret(nil)},
		"short secret": {"abcdef.0123456789abcde", bootstrapSecret(nil)},
		"extra part":   {validBootstrapToken + ".x", bootstrapSecret(nil)},
		"expired": {validBootstrapToken, bootstrapSecret(func(s *corev1.Secret) {
			s.Data["expiration"] = []byte(testNow.Add(-time.Second).Format(time.RFC3339))
		})},
		"expires now": {validBootstrapToken, bootstrapSecret(func(s *corev1.Secret) {
			s.Data["expiration"] = []byte(testNow.Format(time.RFC3339))
		})},
		"unparsable expiration": {validBootstrapToken, bootstrapSecret(func(s *corev1.Secret) {
			s.Data["expiration"] = []byte("tomorrow")
		})},
		"wrong type": {validBootstrapToken, bootstrapSecret(func(s *corev1.Secret) {
			s.Type = corev1.SecretTypeOpaque
		})},
		"usage missing": {validBootstrapToken, bootstrapSecret(func(s *corev1.Secret) {
			delete(s.Data, "usage-bootstrap-authentication")
		})},
		"usage false": {validBootstrapToken, bootstrapSecret(func(s *corev1.Secret) {
			s.Data["usage-bootstrap-authentication"] = []byte("false")
		})},
		"token-id mismatch": {validBootstrapToken, bootstrapSecret(func(s *corev1.Secret) {
			s.Data["token-id"] = []byte("fedcba")
		})},
		"extra group outside bootstrappers": {validBootstrapToken, bootstrapSecret(func(s *corev1.Secret) {
			s.Data["auth-extra-groups"] = []byte("system:bootstrappers:ok,system:masters")
		})},
		"bare bootstrappers as extra group": {validBootstrapToken, bootstrapSecret(func(s *corev1.Secret) {
			s.Data["auth-extra-groups"] = []byte("system:bootstrappers")
		})},
		"being deleted": {validBootstrapToken, bootstrapSecret(func(s *corev1.Secret) {
			now := metav1.NewTime(testNow)
			s.DeletionTimestamp = &now
		})},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			a := bootstrapAuthenticator(tt.secrets)
			u, err := a.Authenticate(newRequest(t, "Bearer "+tt.token))
			assertUnauthenticated(t, u, err)
		})
	}
}
