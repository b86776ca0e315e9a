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
// every master stopped for maintenance and started again, a majority lost
// for good, recovered with --cluster-reset, and a rolling upgrade from the
// previous release. They run in the full suite (`make chaos`) only.

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

// rollingUpgrade upgrades the cluster one master at a time, as docs/ha.md
// says: followers first, the leader last, each stopped with SIGTERM and
// started on the binary under test with the same data dir, the next one
// only once the cluster is healthy again. The run starts on
// testutil.UpgradeFrom's build (Nemesis.Release), so the first fault is
// the upgrade with old and new masters serving side by side; later ones,
// every master new, are rolling restarts (a downgrade across the formats
// the new release writes is refused).
func rollingUpgrade(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (func() error, error) {
	l, err := e.Leader(10 * time.Second)
	if err != nil {
		return nil, err
	}
	var order []*Node
	for _, m := range e.Members() {
		if m != l {
			order = append(order, m)
		}
	}
	order = append(order, l)
	bin := testutil.Binary(e.t)
	for _, m := range order {
		m.mu.Lock()
		from := m.bin
		m.bin = bin
		m.mu.Unlock()
		what := "restarted"
		if from != bin {
			what = "upgraded"
		}
		m.Stop()
		if m == l {
			f.Disruptions = append(f.Disruptions, e.Now())
		}
		m.SetBinary(bin)
		e.Restart(m)
		// The roll goes on only once the cluster is whole again; its
		// waits outlive the run's context (it may end meanwhile).
		if err := e.WaitHealthy(90 * time.Second); err != nil {
			return nil, fmt.Errorf("after %s %s: %w", what, m.Name, err)
		}
		f.logf(e, "%s %s", what, m.Name)
	}
	e.mu.Lock()
	e.binary = bin
	e.mu.Unlock()
	return func() error { return nil }, nil
}
