package agent

import (
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// backoffs computes the kubelet's exponential back-off: the first retry
// at once, then base, 2×base, 4×base... up to max. It is derived from the
// restart count the runtime holds, so a restarted agent keeps the same
// back-off.
type backoffs struct {
	base, max time.Duration
}

func newBackoffs(base, max time.Duration) *backoffs { return &backoffs{base: base, max: max} }

// delay is the wait before attempt n (1 = the first retry).
func (b *backoffs) delay(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := b.base
	for i := 2; i < n && d < b.max; i++ {
		d *= 2
	}
	if d > b.max {
		d = b.max
	}
	return d
}

// containerDelay is the wait before a container's restart number n, given
// how long the instance that exited ran: one that ran for twice the
// maximum back-off restarts at once (the kubelet resets its back-off).
func (b *backoffs) containerDelay(n int, ran time.Duration) time.Duration {
	if ran > 2*b.max {
		return 0
	}
	return b.delay(n)
}

// forget drops per-pod state (none is kept today).
func (b *backoffs) forget(types.UID) {}
