package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// Nemeses of the control plane's day-2 operations (issue 18, docs/ha.md):
// every master stopped for maintenance and started again, and a majority
// lost for good, recovered with --cluster-reset. They run in the full
// suite (`make chaos`) only.

// fullRestart stops every master with SIGTERM (a planned shutdown of the
// whole cluster, as for maintenance) and starts them all again at heal.
func fullRestart(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (func() error, error) {
	ms := e.Members()
	for _, m := range ms {
		m.Stop()
	}
	f.Disruptions = append(f.Disruptions, e.Now())
	f.logf(e, "SIGTERM all %d masters", len(ms))
	return func() error {
		for _, m := range ms {
			e.Restart(m)
		}
		f.logf(e, "started all %d masters", len(ms))
		return nil
	}, nil
}

// quorumReset kills every master but the leader for good (their disks are
// lost), waits until the survivor has seen it has no quorum, then runs
// `skiff server --cluster-reset` on it, starts it, and joins fresh masters
// with empty data dirs until the cluster has its size again. The leader
// holds every acknowledged write, so the checkers must find none lost.
func quorumReset(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (func() error, error) {
	l, err := e.Leader(10 * time.Second)
	if err != nil {
		return nil, err
	}
	size := len(e.Members())
	for _, m := range e.Members() {
		if m == l {
			continue
		}
		m.mu.Lock()
		m.removed = true
		m.mu.Unlock()
		m.Kill()
	}
	f.Disruptions = append(f.Disruptions, e.Now())
	f.logf(e, "kill -9 every master but the leader %s, for good", l.Name)
	// The recovery outlives the run's context (it may end meanwhile).
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The survivor reports it has no quorum (degraded mode) before it is
	// reset.
	err = testutil.Poll(30*time.Second, func() error {
		r := e.admin.Do(rctx, http.MethodPost, l.URL(), "/api/v1/namespaces", map[string]any{
			"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "quorum-probe"}})
		if r.Code == http.StatusServiceUnavailable && strings.Contains(string(r.Body), "no quorum") {
			return nil
		}
		return fmt.Errorf("write to %s without quorum: %s", l.Name, r)
	})
	if err != nil {
		return nil, err
	}
	l.Stop()
	out, err := l.RunServer(rctx, "--cluster-reset")
	if err != nil || !strings.Contains(out, "only master") {
		return nil, fmt.Errorf("--cluster-reset on %s: %v: %s", l.Name, err, out)
	}
	f.logf(e, "--cluster-reset on %s: %s", l.Name, strings.SplitN(out, "\n", 3)[1])
	e.Restart(l)
	return func() error {
		if err := e.WaitHealthy(60 * time.Second); err != nil {
			return fmt.Errorf("after the reset: %w", err)
		}
		for len(e.Members()) < size {
			n, err := e.AddMaster(rng, 90*time.Second)
			if err != nil {
				return fmt.Errorf("joining a fresh master: %w", err)
			}
			f.logf(e, "fresh master %s joined", n.Name)
		}
		return nil
	}, nil
}
