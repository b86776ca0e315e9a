package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// maxTokenAge: a projected token is renewed after this long even if its
// lifetime is longer (as the kubelet's token manager).
const maxTokenAge = 24 * time.Hour

// defaultTokenExpirationSeconds is the lifetime asked when the projection
// names none (the API's default).
const defaultTokenExpirationSeconds = int64(3600)

type tokenKey struct {
	pod        types.UID
	account    string
	audience   string
	expiration int64
}

type cachedToken struct {
	token   string
	issued  time.Time
	expires time.Time
}

// tokenManager gets the tokens of projected serviceAccountToken sources
// through TokenRequest, bound to the pod, and keeps them until 80% of their
// lifetime (or 24 h) has passed; the volume refresh loop then writes the
// renewed token atomically.
type tokenManager struct {
	a   *Agent
	now func() time.Time
	mu  sync.Mutex
	// tokens by pod, account, audience and lifetime.
	tokens map[tokenKey]cachedToken
}

func newTokenManager(a *Agent) *tokenManager {
	return &tokenManager{a: a, now: time.Now, tokens: map[tokenKey]cachedToken{}}
}

// needsRefresh: 80% of the lifetime or 24 h have passed.
func (c cachedToken) needsRefresh(now time.Time) bool {
	life := c.expires.Sub(c.issued)
	return now.After(c.issued.Add(life*8/10)) || now.Sub(c.issued) > maxTokenAge
}

// token returns a token for src of pod, asking the API for a new one when
// none is cached or the cached one is due for renewal. When renewal fails
// a cached token that has not expired is kept.
func (m *tokenManager) token(ctx context.Context, pod *corev1.Pod, src *corev1.ServiceAccountTokenProjection) ([]byte, error) {
	exp := defaultTokenExpirationSeconds
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	account := pod.Spec.ServiceAccountName
	if account == "" {
		account = "default"
	}
	key := tokenKey{pod: pod.UID, account: account, audience: src.Audience, expiration: exp}
	now := m.now()
	m.mu.Lock()
	cur, ok := m.tokens[key]
	m.mu.Unlock()
	if ok && !cur.needsRefresh(now) {
		return []byte(cur.token), nil
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		tr.Spec.Audiences = []string{src.Audience}
	}
	out, err := m.a.cfg.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, account, tr, metav1.CreateOptions{})
	if err != nil {
		if ok && now.Before(cur.expires) {
			m.a.log.Warn("renew service-account token failed, keeping the current one",
				"pod", pod.Namespace+"/"+pod.Name, "err", err)
			return []byte(cur.token), nil
		}
		return nil, fmt.Errorf("failed to fetch token: %w", err)
	}
	// The lifetime granted (the API may cut it) counted on our clock, so
	// that skew between node and master does not matter.
	got := cachedToken{token: out.Status.Token, issued: now, expires: out.Status.ExpirationTimestamp.Time}
	if out.Spec.ExpirationSeconds != nil {
		got.expires = now.Add(time.Duration(*out.Spec.ExpirationSeconds) * time.Second)
	}
	m.mu.Lock()
	m.tokens[key] = got
	m.mu.Unlock()
	return []byte(got.token), nil
}

// forget drops the tokens of a removed pod.
func (m *tokenManager) forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.tokens {
		if k.pod == uid {
			delete(m.tokens, k)
		}
	}
}
