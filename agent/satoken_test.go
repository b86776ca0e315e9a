package agent

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTokenRenewal(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := pod("tok", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: "present:1.0"})
	p.Spec.ServiceAccountName = "robot"
	created := h.createPod(p)

	clock := time.Now()
	m := newTokenManager(h.a)
	m.now = func() time.Time { return clock }
	hour := int64(3600)
	src := &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &hour}
	first, err := m.token(ctx, created, src)
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.token(ctx, created, src)
	if err != nil || string(again) != string(first) {
		t.Fatalf("token not reused before 80%% of its life: %v", err)
	}
	clock = clock.Add(47 * time.Minute) // 78%
	if again, _ = m.token(ctx, created, src); string(again) != string(first) {
		t.Fatalf("renewed at 78%% of the lifetime")
	}
	clock = clock.Add(2 * time.Minute) // 82%
	renewed, err := m.token(ctx, created, src)
	if err != nil || string(renewed) == string(first) {
		t.Fatalf("not renewed at 82%% of the lifetime: %v", err)
	}
	c, err := h.api.Tokens.Verify(string(renewed), time.Now())
	if err != nil || c.Pod == nil || c.Pod.UID != created.UID {
		t.Fatalf("renewed token: %+v %v", c, err)
	}
	// Another audience is another token.
	other, err := m.token(ctx, created, &corev1.ServiceAccountTokenProjection{Path: "t", Audience: "vault", ExpirationSeconds: &hour})
	if err != nil || string(other) == string(renewed) {
		t.Fatalf("audience token: %v", err)
	}
	// A failed renewal keeps the token while it is valid, then fails.
	if err := h.cs.CoreV1().ServiceAccounts("default").Delete(ctx, "robot", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(50 * time.Minute)
	if kept, err := m.token(ctx, created, src); err != nil || string(kept) != string(renewed) {
		t.Fatalf("valid token not kept when renewal fails: %v", err)
	}
	clock = clock.Add(time.Hour)
	if _, err := m.token(ctx, created, src); err == nil {
		t.Fatalf("an expired token was kept")
	}
	m.forget(created.UID)
	if len(m.tokens) != 0 {
		t.Fatalf("tokens left after forget: %d", len(m.tokens))
	}
}

func TestTokenRenewedAfterADay(t *testing.T) {
	issued := time.Now()
	c := cachedToken{issued: issued, expires: issued.Add(365 * 24 * time.Hour)}
	if c.needsRefresh(issued.Add(23 * time.Hour)) {
		t.Fatal("renewal before 24 h")
	}
	if !c.needsRefresh(issued.Add(25 * time.Hour)) {
		t.Fatal("no renewal after 24 h")
	}
}
