package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// watchCacheSize is the masters' watch ring: small, so that a watcher
// that falls behind gets 410 and relists.
const watchCacheSize = 500

// Config sizes one run.
type Config struct {
	Mode NetMode
	// Duration is how long the nemesis injects faults (the load starts
	// before and ends after).
	Duration time.Duration
	// Quiet is the healthy time between two faults.
	Quiet time.Duration
	Seed  uint64
	// CheckTimeout bounds the linearizability check.
	CheckTimeout time.Duration
	// Artifacts is where failing histories are written.
	Artifacts string
	// ExtraArgs are more `skiff server` flags for every master
	// ($SKIFF_CHAOS_ARGS), for experiments with tuning.
	ExtraArgs []string
}

// Result is what one nemesis run found.
type Result struct {
	Nemesis  string
	Masters  int
	Mode     NetMode
	Duration time.Duration

	Ops, OpsOK, OpsUnknown int
	Faults                 *Faults
	Lin                    *LinReport
	Stale                  int
	Set                    *SetReport
	Counter                *CounterReport
	Watch                  *WatchReport
	Divergent              int // masters whose state differs from the others'
	NotRecovered           int // faults after which the cluster did not become healthy
	// Crashes are panics, fatal errors and data races in master logs.
	Crashes int
	Unavail []time.Duration
	Details []string
}

// Lost is the number of acknowledged writes lost.
func (r *Result) Lost() int { return r.Set.Lost + r.Counter.Lost }

// Failed reports whether the run found any violation, loss, stale read,
// watch anomaly or divergence.
func (r *Result) Failed() bool {
	return r.Lin.Violations > 0 || r.Lost() > 0 || r.Stale > 0 || r.Watch.Anomalies() > 0 ||
		r.Divergent > 0 || r.Set.Unexpected > 0 || r.Counter.Extra > 0 || r.NotRecovered > 0 || r.Crashes > 0
}

// Run starts a cluster for nem, runs the workloads under it for
// cfg.Duration, heals, and checks.
func Run(t *testing.T, nem *Nemesis, cfg Config) *Result {
	res := &Result{Nemesis: nem.Name, Masters: nem.Masters, Mode: cfg.Mode, Duration: cfg.Duration, Faults: &Faults{}}
	args := append([]string{"--watch-cache-size", strconv.Itoa(watchCacheSize)}, nem.Args...)
	args = append(args, cfg.ExtraArgs...)
	opts := EnvOptions{Masters: nem.Masters, Mode: cfg.Mode, Args: args}
	if nem.Release != "" {
		opts.Binary = testutil.BuildRelease(t, nem.Release)
	}
	env := StartEnv(t, opts)
	hist := &History{}
	w := &Workloads{env: env, hist: hist, RegisterKeys: 4, RegisterClients: 4, SetClients: 3, CounterClients: 2}
	setupCtx, cancelSetup := context.WithTimeout(context.Background(), 30*time.Second)
	if err := w.Setup(setupCtx); err != nil {
		cancelSetup()
		t.Fatalf("setup: %v", err)
	}
	cancelSetup()
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))

	// Watchers, one per master.
	wctx, stopWatchers := context.WithCancel(context.Background())
	defer stopWatchers()
	var watchers []*Watcher
	var wwg sync.WaitGroup
	for i, n := range env.Members() {
		wt := &Watcher{ID: i, Home: n, env: env, Sleepy: i == 0}
		watchers = append(watchers, wt)
		wwg.Add(1)
		go func(seed uint64) {
			defer wwg.Done()
			wt.Run(wctx, rand.New(rand.NewPCG(seed, 7)))
		}(cfg.Seed + uint64(i))
	}

	// Load and faults. The schedule injects faults for cfg.Duration; the
	// load goes on until the last fault is healed and the cluster is
	// healthy again, and a moment more, so that every disruption's
	// unavailability is measured.
	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	w.Start(loadCtx, cfg.Seed)
	ctx, stop := context.WithTimeout(context.Background(), cfg.Duration)
	defer stop()
	schedule(ctx, env, nem, cfg, rng, res)
	tail := time.NewTimer(time.Second)
	<-tail.C
	stopLoad()
	w.Wait()

	// Heal everything, then the final checks.
	env.HealAll()
	if err := env.WaitHealthy(60 * time.Second); err != nil {
		res.NotRecovered++
		res.Details = append(res.Details, fmt.Sprintf("cluster not healthy after healing: %v", err))
	}
	fenceRV := fence(env, "fence", res)
	if err := testutil.Poll(30*time.Second, func() error {
		for _, wt := range watchers {
			if c := wt.Cursor(); c < fenceRV {
				return fmt.Errorf("watcher %d at %d, fence at %d", wt.ID, c, fenceRV)
			}
		}
		return nil
	}); err != nil {
		res.Details = append(res.Details, fmt.Sprintf("watchers did not reach the fence: %v", err))
	}
	stopWatchers()
	wwg.Wait()

	final, finalRV := converge(env, fenceRV, res)
	ops := hist.Ops()
	for _, op := range ops {
		res.Ops++
		switch op.Outcome {
		case OK:
			res.OpsOK++
		case Unknown:
			res.OpsUnknown++
		}
	}
	res.Lin = CheckRegister(ops, cfg.CheckTimeout, cfg.Artifacts, nem.Name)
	var staleDetails []string
	res.Stale, staleDetails = CheckStaleReads(ops)
	res.Stale += res.Faults.StaleHits
	res.Details = append(res.Details, staleDetails...)
	res.Set = CheckSet(ops, final)
	res.Details = append(res.Details, res.Set.Details...)
	res.Counter = CheckCounter(ops, final)
	res.Watch = CheckWatchers(watchers, ops, final, finalRV)
	expiredProbe(env, ops, res)
	res.Details = append(res.Details, res.Watch.Details...)
	scanLogs(env, res)
	if res.Failed() || os.Getenv("SKIFF_CHAOS_KEEP_LOGS") != "" {
		keepLogs(env, cfg.Artifacts, nem.Name, res)
	}
	var firsts []Op
	res.Unavail, firsts = unavailability(ops, res.Faults.Disruptions)
	for i, op := range firsts {
		res.Faults.logf(env, "disruption at %s: first acknowledged write %s %s via %s, [%s, %s]", time.Duration(res.Faults.Disruptions[i]).Truncate(time.Millisecond),
			op.Kind, op.Key, op.Node, time.Duration(op.Call).Truncate(time.Millisecond), time.Duration(op.Return).Truncate(time.Millisecond))
	}
	return res
}

// scanLogs counts panics, fatal errors and data races (a master built
// with -race) in the masters' logs.
func scanLogs(env *Env, res *Result) {
	env.mu.Lock()
	nodes := append([]*Node(nil), env.nodes...)
	env.mu.Unlock()
	for _, n := range nodes {
		b, err := os.ReadFile(n.LogPath())
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") || strings.Contains(line, "WARNING: DATA RACE") {
				res.Crashes++
				res.Details = append(res.Details, fmt.Sprintf("%s: %s", n.Name, line))
			}
		}
	}
}

// keepLogs copies every master's log into dir.
func keepLogs(env *Env, dir, name string, res *Result) {
	if dir == "" || os.MkdirAll(dir, 0o755) != nil {
		return
	}
	env.mu.Lock()
	nodes := append([]*Node(nil), env.nodes...)
	env.mu.Unlock()
	for _, n := range nodes {
		b, err := os.ReadFile(n.LogPath())
		if err != nil {
			continue
		}
		p := filepath.Join(dir, name+"-"+n.Name+".log")
		if err := os.WriteFile(p, b, 0o644); err == nil {
			res.Details = append(res.Details, "master log: "+p)
		}
	}
}

// schedule injects faults until ctx ends: a quiet spell, a fault held for
// nem.Hold, the heal, then a wait until the cluster is healthy again.
func schedule(ctx context.Context, env *Env, nem *Nemesis, cfg Config, rng *rand.Rand, res *Result) {
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	f := res.Faults
	for wait(cfg.Quiet) {
		heal, err := nem.Inject(ctx, env, rng, f)
		if err != nil {
			res.Details = append(res.Details, fmt.Sprintf("inject %s: %v", nem.Name, err))
			f.logf(env, "inject failed: %v", err)
			continue
		}
		f.Count++
		// A fault is held for its whole time even past the end of the
		// schedule.
		hold := time.NewTimer(nem.Hold)
		<-hold.C
		if err := heal(); err != nil {
			res.Details = append(res.Details, fmt.Sprintf("heal %s: %v", nem.Name, err))
		}
		if err := env.WaitHealthy(30 * time.Second); err != nil {
			res.NotRecovered++
			res.Details = append(res.Details, fmt.Sprintf("not healthy 30s after healing fault %d: %v", f.Count, err))
			f.logf(env, "not healthy: %v", err)
		}
	}
}

// fence writes one last object after the load and returns its
// resourceVersion: every watcher must reach it.
func fence(env *Env, name string, res *Result) uint64 {
	var rv uint64
	err := testutil.Poll(30*time.Second, func() error {
		ts := env.Targets()
		if len(ts) == 0 {
			return fmt.Errorf("no master running")
		}
		n := ts[0]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r := env.admin.Do(ctx, http.MethodPost, n.URL(), cmPath(Namespace, ""), newCM(Namespace, name, 0, 0))
		if r.Outcome == OK {
			_, rv, _ = cmValue(r.Body)
			return nil
		}
		if r.Code == http.StatusConflict {
			// An earlier try took effect: read it.
			r = env.admin.Do(ctx, http.MethodGet, n.URL(), cmPath(Namespace, name), nil)
			if r.Outcome == OK {
				_, rv, _ = cmValue(r.Body)
				return nil
			}
		}
		return fmt.Errorf("write %s: %s", name, r)
	})
	if err != nil {
		res.NotRecovered++
		res.Details = append(res.Details, fmt.Sprintf("fence: %v", err))
	}
	return rv
}

// converge waits until every member's local state (a resourceVersion=0
// list) holds the same objects, at or after the fence, and returns it. A
// linearizable list must agree too.
func converge(env *Env, fenceRV uint64, res *Result) (map[string]listItem, uint64) {
	var (
		final   map[string]listItem
		finalRV uint64
		lastErr error
	)
	err := testutil.Poll(30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var first map[string]listItem
		var firstName string
		for _, n := range env.Members() {
			items, rv, err := env.admin.List(ctx, n.URL(), Namespace, "0")
			if err != nil {
				return err
			}
			if rv < fenceRV {
				return fmt.Errorf("%s at %d, fence at %d", n.Name, rv, fenceRV)
			}
			if first == nil {
				first, firstName = items, n.Name
				continue
			}
			if !reflect.DeepEqual(first, items) {
				lastErr = fmt.Errorf("%s and %s differ: %s", firstName, n.Name, diffItems(first, items))
				return lastErr
			}
		}
		lin, _, err := env.admin.List(ctx, env.Members()[0].URL(), Namespace, "")
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(first, lin) {
			lastErr = fmt.Errorf("local and linearizable lists differ: %s", diffItems(first, lin))
			return lastErr
		}
		final = first
		return nil
	})
	if err != nil {
		res.Divergent++
		res.Details = append(res.Details, fmt.Sprintf("masters did not converge: %v (last difference: %v)", err, lastErr))
	}
	// The watchers' final views must reach the newest object version.
	for _, it := range final {
		finalRV = max(finalRV, it.RV)
	}
	return final, finalRV
}

func diffItems(a, b map[string]listItem) string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			d = append(d, fmt.Sprintf("%s: %+v vs %+v", k, v, w))
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			d = append(d, fmt.Sprintf("%s: missing vs %+v", k, w))
		}
	}
	if len(d) > 10 {
		d = append(d[:10], fmt.Sprintf("… %d more", len(d)-10))
	}
	return strings.Join(d, "; ")
}

// expiredProbe checks on every member that a watch resumed from a
// resourceVersion long gone gets 410 Expired, and that a relist and a
// watch from its resourceVersion then see a new write.
func expiredProbe(env *Env, ops []Op, res *Result) {
	acked := 0
	for _, op := range ops {
		if op.IsWrite() && op.Outcome == OK {
			acked++
		}
	}
	if acked < watchCacheSize+100 {
		return // the ring may still hold resourceVersion 1
	}
	for i, n := range env.Members() {
		if err := probe410(env, n, fmt.Sprintf("probe-%d", i)); err != nil {
			res.Watch.Other++
			res.Watch.Details = append(res.Watch.Details, fmt.Sprintf("410 probe on %s: %v", n.Name, err))
		}
	}
}

func probe410(env *Env, n *Node, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ev, err := firstEvent(ctx, env, n, "1")
	if err != nil {
		return err
	}
	if ev.Type != "ERROR" || !strings.Contains(string(ev.Object.Raw), `"code":410`) {
		return fmt.Errorf("watch from resourceVersion 1: got %s %s, want ERROR 410", ev.Type, ev.Object.Raw)
	}
	_, rv, err := env.admin.List(ctx, n.URL(), Namespace, "")
	if err != nil {
		return fmt.Errorf("relist: %w", err)
	}
	got := make(chan error, 1)
	go func() {
		ev, err := firstEvent(ctx, env, n, fmt.Sprint(rv))
		if err == nil && (ev.Type != "ADDED" || !strings.Contains(string(ev.Object.Raw), `"name":"`+name+`"`)) {
			err = fmt.Errorf("after relist at %d: got %s %s, want ADDED %s", rv, ev.Type, ev.Object.Raw, name)
		}
		got <- err
	}()
	r := env.admin.Do(ctx, http.MethodPost, n.URL(), cmPath(Namespace, ""), newCM(Namespace, name, 0, 0))
	if r.Outcome != OK {
		return fmt.Errorf("write %s: %s", name, r)
	}
	return <-got
}

// firstEvent opens a watch from rv on n and returns its first event other
// than a bookmark.
func firstEvent(ctx context.Context, env *Env, n *Node, rv string) (metav1.WatchEvent, error) {
	var ev metav1.WatchEvent
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+cmPath(Namespace, "")+"?watch=1&resourceVersion="+rv, nil)
	if err != nil {
		return ev, err
	}
	resp, err := env.admin.hc.Do(req)
	if err != nil {
		return ev, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return ev, fmt.Errorf("watch from %s: %d %s", rv, resp.StatusCode, b)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		ev = metav1.WatchEvent{}
		if err := dec.Decode(&ev); err != nil {
			return ev, fmt.Errorf("watch from %s: %w", rv, err)
		}
		if ev.Type != "BOOKMARK" {
			return ev, nil
		}
	}
}
