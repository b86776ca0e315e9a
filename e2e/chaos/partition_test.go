package chaos

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestPartitionedLeaderForwarding is the regression test for what the
// partition nemesis found first: a write sent to a follower just after the
// leader was cut off (the follower still forwards to it) hung until the
// request's 30 s deadline, although the majority had a new leader within
// two seconds. Forwarded requests now end when the leader changes, so the
// write gets its answer (504, or success on the new leader) in a few
// seconds. The cut-off old leader must not answer a default GET either.
func TestPartitionedLeaderForwarding(t *testing.T) {
	if ok, why := testutil.HaveNetns(); !ok {
		t.Skipf("partitions need network namespaces: %s", why)
	}
	env := StartEnv(t, EnvOptions{Masters: 3, Mode: Netns, ClientTimeout: 45 * time.Second})
	w := &Workloads{env: env, hist: &History{}}
	ctx := context.Background()
	if err := w.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	leader, err := env.Leader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	follower := others(env, leader)[0]
	// Make sure the follower has a connection to the leader to forward on.
	if r := env.client.Do(ctx, http.MethodPost, follower.URL(), cmPath(Namespace, ""), newCM(Namespace, "before", 1, 0)); r.Outcome != OK {
		t.Fatalf("write before the partition: %s", r)
	}

	if err := env.Partition([]*Node{leader}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := env.client.Do(ctx, http.MethodPost, follower.URL(), cmPath(Namespace, ""), newCM(Namespace, "during", 2, 0))
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("a write through a follower took %s after the leader was cut off (%s): forwarding waited on the old leader", took.Round(time.Millisecond), r)
	}
	t.Logf("write through %s right after the cut: %s in %s", follower.Name, r, time.Since(start).Round(time.Millisecond))

	// The majority serves writes; the old leader does not serve reads of
	// what it had.
	f := &Faults{}
	v, ok := probeWrite(env, others(env, leader), f)
	if !ok {
		t.Fatalf("no write acknowledged by the majority: %v", f.Log)
	}
	env.client.timeout = 3 * time.Second
	probeRead(env, []*Node{leader}, v, f)
	if f.StaleHits > 0 {
		t.Fatalf("stale read from the cut-off leader: %v", f.Log)
	}
	if err := env.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := env.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}
