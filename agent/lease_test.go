package agent

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// renewals polls the node's Lease for d and counts its renewals.
func renewals(t *testing.T, h *harness, d time.Duration) int {
	t.Helper()
	var last time.Time
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		l, err := h.cs.CoordinationV1().Leases(leaseNamespace).Get(context.Background(), testNode, metav1.GetOptions{})
		if err != nil || l.Spec.RenewTime == nil {
			continue
		}
		if rt := l.Spec.RenewTime.Time; !rt.Equal(last) {
			if !last.IsZero() {
				n++
			}
			last = rt
		}
	}
	return n
}

// TestHeartbeatBurst: a node suspected by gossip renews its Lease every
// 500ms for the burst, then every quarter of its duration again.
func TestHeartbeatBurst(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.LeaseDuration = 40 * time.Second })
	h.waitFor("lease", func() error {
		_, err := h.cs.CoordinationV1().Leases(leaseNamespace).Get(context.Background(), testNode, metav1.GetOptions{})
		return err
	})
	if n := renewals(t, h, 1500*time.Millisecond); n != 0 {
		t.Fatalf("%d renewals in 1.5s before the burst (every 10s expected)", n)
	}
	h.a.HeartbeatBurst(2 * time.Second)
	if n := renewals(t, h, 2*time.Second); n < 3 {
		t.Fatalf("%d renewals in the 2s burst, want at least 3 (every 500ms)", n)
	}
	time.Sleep(700 * time.Millisecond) // the burst's last renewal
	if n := renewals(t, h, 2*time.Second); n != 0 {
		t.Fatalf("%d renewals in 2s after the burst", n)
	}
}
