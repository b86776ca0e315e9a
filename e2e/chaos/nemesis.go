package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// Nemesis injects one kind of fault, over and over, while the workloads
// run.
type Nemesis struct {
	Name    string
	Masters int
	// Args are extra flags for every master.
	Args []string
	// NeedsNetns: the fault needs network namespaces (partitions).
	NeedsNetns bool
	// Inject makes one fault and returns how to heal it. It appends to
	// f.Disruptions when it takes the leader away.
	Inject func(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (heal func() error, err error)
	// Hold is how long a fault lasts before it is healed.
	Hold time.Duration
	// Extra nemeses run only when named in SKIFF_CHAOS_NEMESES.
	Extra bool
	// Full nemeses run in the full suite (SKIFF_CHAOS=full, `make
	// chaos`) or when named, not in the short one `make test` runs.
	Full bool
	// Release, if set, is the commit whose build the masters start with
	// (testutil.BuildRelease), for upgrades.
	Release string
}

// Faults records what a nemesis did.
type Faults struct {
	Count int
	// Disruptions are the times (Env clock) the leader was taken away.
	Disruptions []int64
	// SnapshotInstalls counts restarted masters that received a snapshot
	// from the leader; KilledDuringSnapshot kills that hit a snapshot
	// being written.
	SnapshotInstalls     int
	KilledDuringSnapshot int
	// StaleProbes counts targeted reads of a cut-off or resumed old
	// leader after a newer write was acknowledged elsewhere; StaleHits
	// those that answered with the older value.
	StaleProbes, StaleHits int
	// Corruptions counts damaged follower logs; Repairs those the
	// follower found and repaired from the leader.
	Corruptions, Repairs int
	Log                  []string
}

func (f *Faults) logf(e *Env, format string, args ...any) {
	f.Log = append(f.Log, fmt.Sprintf("%8s (%s) ", time.Duration(e.Now()).Truncate(time.Millisecond), time.Now().UTC().Format("15:04:05.000"))+fmt.Sprintf(format, args...))
}

// snapshotFlags make masters snapshot every few dozen entries and keep few
// entries after a snapshot, so a follower that misses a few seconds must
// install one.
var snapshotFlags = []string{"--raft-snapshot-threshold", "64", "--raft-snapshot-interval", "200ms", "--raft-trailing-logs", "32"}

// Nemeses are the faults the suite runs, in order.
func Nemeses() []*Nemesis {
	return []*Nemesis{
		{Name: "kill-leader", Masters: 3, Hold: 2 * time.Second, Inject: killLeader},
		{Name: "kill-random", Masters: 5, Hold: 2 * time.Second, Inject: killRandom},
		{Name: "pause-leader", Masters: 3, Hold: 2 * time.Second, Inject: pauseLeader},
		{Name: "partition-leader", Masters: 5, Hold: 3 * time.Second, Inject: partitionLeader, NeedsNetns: true},
		{Name: "membership", Masters: 3, Hold: 0, Inject: membership},
		{Name: "snapshot-kill", Masters: 3, Hold: 2 * time.Second, Args: snapshotFlags, Inject: snapshotKill},
		{Name: "corrupt-follower", Masters: 3, Hold: 2 * time.Second, Inject: corruptFollower, Full: true},
		{Name: "restart-no-quorum", Masters: 3, Hold: 0, Inject: restartNoQuorum, Full: true},
		{Name: "full-restart", Masters: 3, Hold: 2 * time.Second, Inject: fullRestart, Full: true},
		{Name: "quorum-reset", Masters: 3, Hold: 0, Inject: quorumReset, Full: true},
		{Name: "rolling-upgrade", Masters: 3, Hold: 0, Inject: rollingUpgrade, Full: true, Release: testutil.UpgradeFrom},
		{Name: "mixed", Masters: 5, Hold: 2 * time.Second, Args: snapshotFlags, Inject: mixed, Extra: true},
	}
}

// mixed picks one of the other faults at random each time (partitions
// only in network namespaces).
func mixed(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (func() error, error) {
	faults := []func(context.Context, *Env, *rand.Rand, *Faults) (func() error, error){killLeader, killRandom, pauseLeader, membership, snapshotKill}
	if e.net != nil {
		faults = append(faults, partitionLeader)
	}
	return faults[rng.IntN(len(faults))](ctx, e, rng, f)
}

func killLeader(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (func() error, error) {
	l, err := e.Leader(10 * time.Second)
	if err != nil {
		return nil, err
	}
	e.Kill(l)
	f.Disruptions = append(f.Disruptions, e.Now())
	f.logf(e, "kill -9 leader %s", l.Name)
	return func() error { e.Restart(l); f.logf(e, "restart %s", l.Name); return nil }, nil
}

// killRandom kills one or two random masters (two only if a majority
// stays); every third fault kills them all at once, as a power cut would.
func killRandom(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (func() error, error) {
	l, err := e.Leader(10 * time.Second)
	if err != nil {
		return nil, err
	}
	ms := e.Members()
	k := 1
	if len(ms) >= 5 && rng.IntN(2) == 0 {
		k = 2
	}
	if f.Count%3 == 2 {
		k = len(ms)
	}
	rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
	victims := ms[:k]
	for _, v := range victims {
		e.Kill(v)
		if v == l && k < len(ms) {
			// (A cut of every master is not a leader failover.)
			f.Disruptions = append(f.Disruptions, e.Now())
		}
		f.logf(e, "kill -9 %s (leader: %v)", v.Name, v == l)
	}
	return func() error {
		for _, v := range victims {
			e.Restart(v)
		}
		f.logf(e, "restart %d", len(victims))
		return nil
	}, nil
}

func pauseLeader(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (func() error, error) {
	l, err := e.Leader(10 * time.Second)
	if err != nil {
		return nil, err
	}
	if err := e.Pause(l); err != nil {
		return nil, err
	}
	f.Disruptions = append(f.Disruptions, e.Now())
	f.logf(e, "SIGSTOP leader %s", l.Name)
	return func() error {
		// The majority moves on; the old leader, woken, must not answer
		// a default read from what it had.
		v, ok := probeWrite(e, others(e, l), f)
		f.logf(e, "SIGCONT %s", l.Name)
		if err := e.Resume(l); err != nil {
			return err
		}
		if ok {
			probeRead(e, []*Node{l}, v, f)
		}
		return nil
	}, nil
}

// others are the members other than the given ones.
func others(e *Env, not ...*Node) []*Node {
	var out []*Node
	for _, m := range e.Members() {
		skip := false
		for _, n := range not {
			skip = skip || m == n
		}
		if !skip {
			out = append(out, m)
		}
	}
	return out
}

// StaleProbeKey is the ConfigMap the stale-read probes write and read.
const StaleProbeKey = "stale-probe"

// probeWrite writes a new value of StaleProbeKey through one of via (the
// majority) and reports it once acknowledged.
func probeWrite(e *Env, via []*Node, f *Faults) (int, bool) {
	v := int(e.Now())
	err := testutil.Poll(5*time.Second, func() error {
		for _, n := range via {
			if !n.Running() || n.isPaused() {
				continue
			}
			r := e.client.Do(context.Background(), http.MethodPut, n.URL(), cmPath(Namespace, StaleProbeKey), newCM(Namespace, StaleProbeKey, v, 0))
			if r.Outcome == OK {
				return nil
			}
		}
		return fmt.Errorf("no acknowledged probe write")
	})
	if err != nil {
		f.logf(e, "stale probe: write failed: %v", err)
		return 0, false
	}
	return v, true
}

// probeRead reads StaleProbeKey (a default, linearizable GET) from each of
// nodes: an answer must be the value v acknowledged before, or an error.
func probeRead(e *Env, nodes []*Node, v int, f *Faults) {
	rs := make([]*Response, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs[i] = e.client.Do(context.Background(), http.MethodGet, n.URL(), cmPath(Namespace, StaleProbeKey), nil)
		}()
	}
	wg.Wait()
	for i, n := range nodes {
		f.StaleProbes++
		r := rs[i]
		if r.Outcome != OK {
			f.logf(e, "stale probe on %s: %s (no answer is a right answer)", n.Name, r)
			continue
		}
		got, rv, err := cmValue(r.Body)
		if err == nil && got != v {
			f.StaleHits++
			f.logf(e, "STALE READ: %s answered %s = %d (rv %d) after %d was acknowledged", n.Name, StaleProbeKey, got, rv, v)
		} else {
			f.logf(e, "stale probe on %s: fresh", n.Name)
		}
	}
}

// partitionLeader cuts the leader and (with five masters) one follower off
// from the majority. Clients still reach both sides.
func partitionLeader(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (func() error, error) {
	l, err := e.Leader(10 * time.Second)
	if err != nil {
		return nil, err
	}
	side := []*Node{l}
	ms := e.Members()
	if len(ms) >= 5 {
		for _, i := range rng.Perm(len(ms)) {
			if ms[i] != l {
				side = append(side, ms[i])
				break
			}
		}
	}
	if err := e.Partition(side); err != nil {
		return nil, err
	}
	// Measured from when the cut is complete.
	f.Disruptions = append(f.Disruptions, e.Now())
	var names []string
	for _, n := range side {
		names = append(names, n.Name)
	}
	f.logf(e, "partition %v (leader %s) from the majority", names, l.Name)
	return func() error {
		// While still cut off, the minority must not serve a default
		// read of a value the majority has overwritten.
		if v, ok := probeWrite(e, others(e, side...), f); ok {
			probeRead(e, side, v, f)
		}
		f.logf(e, "heal")
		return e.Heal()
	}, nil
}

// membership adds a master and removes another (sometimes the leader)
// under load, keeping three voters.
func membership(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (func() error, error) {
	n, err := e.AddMaster(rng, 60*time.Second)
	if err != nil {
		return nil, fmt.Errorf("add master: %w", err)
	}
	f.logf(e, "added %s", n.Name)
	l, err := e.Leader(10 * time.Second)
	if err != nil {
		return nil, err
	}
	var cands []*Node
	for _, m := range e.Members() {
		if m != n {
			cands = append(cands, m)
		}
	}
	victim := cands[rng.IntN(len(cands))]
	if err := e.RemoveMaster(victim, 30*time.Second); err != nil {
		return nil, err
	}
	if victim == l {
		f.Disruptions = append(f.Disruptions, e.Now())
	}
	f.logf(e, "removed %s (leader: %v)", victim.Name, victim == l)
	return func() error { return nil }, nil
}

// snapshotKill alternates: kill a follower and restart it after the log
// has moved past its trailing entries (it must install a snapshot), and
// kill the leader while it writes a snapshot.
func snapshotKill(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (func() error, error) {
	l, err := e.Leader(10 * time.Second)
	if err != nil {
		return nil, err
	}
	if f.Count%2 == 0 {
		var victim *Node
		for _, m := range e.Members() {
			if m != l {
				victim = m
				break
			}
		}
		before := e.AppliedIndex(victim)
		restores := len(SnapshotRestores(victim))
		e.Kill(victim)
		f.logf(e, "kill -9 follower %s at index %d", victim.Name, before)
		return func() error {
			e.Restart(victim)
			f.logf(e, "restart %s", victim.Name)
			// Wait for it to catch up, then look for a restore of a
			// snapshot newer than what it had.
			err := testutil.Poll(30*time.Second, func() error {
				for _, idx := range SnapshotRestores(victim)[restores:] {
					if idx > before {
						return nil
					}
				}
				return fmt.Errorf("no snapshot installed yet")
			})
			if err == nil {
				f.SnapshotInstalls++
				f.logf(e, "%s installed a snapshot from the leader", victim.Name)
			} else {
				f.logf(e, "%s did not install a snapshot: %v", victim.Name, err)
			}
			return nil
		}, nil
	}
	// Wait (briefly) for the leader to be writing a snapshot, then kill it.
	snaps := filepath.Join(l.DataDir, "raft", "snapshots")
	hit := false
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ents, _ := os.ReadDir(snaps)
		for _, d := range ents {
			if strings.HasSuffix(d.Name(), ".tmp") {
				hit = true
			}
		}
		if hit {
			break
		}
		time.Sleep(2 * time.Millisecond) // polling a directory: no event to wait on
	}
	e.Kill(l)
	f.Disruptions = append(f.Disruptions, e.Now())
	if hit {
		f.KilledDuringSnapshot++
	}
	f.logf(e, "kill -9 leader %s (snapshot in progress: %v)", l.Name, hit)
	return func() error { e.Restart(l); f.logf(e, "restart %s", l.Name); return nil }, nil
}
