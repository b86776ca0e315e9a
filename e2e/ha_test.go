package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
)

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
}

// clientFor returns a clientset for master m using the cluster's admin
// credentials (one kubeconfig works for every master).
func clientFor(t *testing.T, c *testutil.Cluster, m *testutil.Master) *kubernetes.Clientset {
	t.Helper()
	cfg := c.Masters[0].RESTConfig()
	cfg.Host = m.URL()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return cs
}

// TestThreeMasters forms a 3-master cluster, writes through every master,
// kills the leader with SIGKILL, keeps writing, restarts the killed master
// and checks that every acknowledged write is on every master.
func TestThreeMasters(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	ctx := context.Background()

	// Writes through every master (followers forward to the leader).
	acked := map[string]string{}
	for i, m := range c.Masters {
		cs := clientFor(t, c, m)
		for j := 0; j < 20; j++ {
			name := fmt.Sprintf("via-%s-%d", m.Name, j)
			val := fmt.Sprint(i*100 + j)
			if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, configMap(name, map[string]string{"v": val}), metav1.CreateOptions{}); err != nil {
				t.Fatalf("create %s through %s: %v", name, m.Name, err)
			}
			acked[name] = val
		}
	}
	// A default (linearizable) read on a follower sees a write just made
	// through another master.
	for _, m := range c.Masters {
		cs := clientFor(t, c, m)
		got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "via-m3-19", metav1.GetOptions{})
		if err != nil || got.Data["v"] != "219" {
			t.Fatalf("read via %s: %v %+v", m.Name, err, got)
		}
	}
	// AlreadyExists and Conflict come back from the leader's FSM through
	// forwarding as proper Status errors.
	follower := otherThan(c, c.Leader(10*time.Second))
	fcs := clientFor(t, c, follower)
	_, err := fcs.CoreV1().ConfigMaps("default").Create(ctx, configMap("via-m1-0", nil), metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		t.Fatalf("duplicate create through follower: want AlreadyExists, got %v", err)
	}
	stale, err := fcs.CoreV1().ConfigMaps("default").Get(ctx, "via-m1-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	upd := stale.DeepCopy()
	upd.Data = map[string]string{"v": "updated"}
	if _, err := fcs.CoreV1().ConfigMaps("default").Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update through follower: %v", err)
	}
	acked["via-m1-1"] = "updated"
	stale.Data = map[string]string{"v": "stale"}
	if _, err := fcs.CoreV1().ConfigMaps("default").Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: want Conflict, got %v", err)
	}

	// Kill -9 the leader; a new one is elected and writes continue through
	// the survivors.
	old := c.Leader(10 * time.Second)
	old.Kill()
	newLeader := c.Leader(15 * time.Second)
	if newLeader == old {
		t.Fatalf("leader did not change")
	}
	for _, m := range c.Running() {
		cs := clientFor(t, c, m)
		for j := 0; j < 10; j++ {
			name := fmt.Sprintf("after-kill-%s-%d", m.Name, j)
			if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, configMap(name, map[string]string{"v": name}), metav1.CreateOptions{}); err != nil {
				t.Fatalf("create %s after leader kill: %v", name, err)
			}
			acked[name] = name
		}
	}

	// The killed master restarts from its data dir and catches up.
	old.Start()
	old.WaitReady(30 * time.Second)
	for _, m := range c.Masters {
		checkAcked(t, clientFor(t, c, m), m.Name, acked)
	}

	// The members command shows three voters, one leader.
	out, err := old.Run(ctx, "cluster", "members", "--kubeconfig", c.Masters[0].Kubeconfig())
	if err != nil {
		t.Fatalf("skiff cluster members: %v\n%s", err, out)
	}
	if strings.Count(out, "leader") != 1 || strings.Count(out, "voter") != 3 || strings.Count(out, " ready") != 3 {
		t.Fatalf("members output:\n%s", out)
	}
}

func otherThan(c *testutil.Cluster, not *testutil.Master) *testutil.Master {
	for _, m := range c.Running() {
		if m != not {
			return m
		}
	}
	return nil
}

// checkAcked reads every acknowledged write back from one master, both with
// a linearizable list and a local (resourceVersion=0) list once caught up.
func checkAcked(t *testing.T, cs *kubernetes.Clientset, name string, acked map[string]string) {
	t.Helper()
	list, err := cs.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list via %s: %v", name, err)
	}
	have := map[string]string{}
	for _, cm := range list.Items {
		have[cm.Name] = cm.Data["v"]
	}
	for k, v := range acked {
		if have[k] != v {
			t.Errorf("via %s: %s = %q, want %q (acknowledged write lost)", name, k, have[k], v)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "local read caught up on "+name, func() error {
		local, err := cs.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return err
		}
		if len(local.Items) != len(list.Items) {
			return fmt.Errorf("local list has %d items, linearizable list %d", len(local.Items), len(list.Items))
		}
		return nil
	})
}

// TestRestartFromSnapshot makes the masters snapshot often, then restarts a
// follower that fell behind by more than the trailing logs (so it must
// install a snapshot) and the whole cluster (so each restores its own).
func TestRestartFromSnapshot(t *testing.T) {
	c := testutil.StartCluster(t, 3, "--raft-snapshot-threshold", "64", "--raft-snapshot-interval", "200ms", "--raft-trailing-logs", "16")
	ctx := context.Background()
	leader := c.Leader(10 * time.Second)
	lcs := clientFor(t, c, leader)

	victim := otherThan(c, leader)
	victim.Kill()
	acked := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for j := 0; j < 60; j++ {
				name := fmt.Sprintf("snap-%d-%d", w, j)
				if _, err := lcs.CoreV1().ConfigMaps("default").Create(ctx, configMap(name, map[string]string{"v": name}), metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acked[name] = name
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("write: %v", err)
	}
	testutil.WaitFor(t, 20*time.Second, "a snapshot on the leader", func() error {
		snaps, _ := filepath.Glob(filepath.Join(leader.DataDir, "raft", "snapshots", "*", "meta.json"))
		if len(snaps) == 0 {
			return fmt.Errorf("no snapshot yet")
		}
		return nil
	})

	// The follower comes back behind the leader's log: it installs a snapshot.
	victim.Start()
	victim.WaitReady(30 * time.Second)
	checkAcked(t, clientFor(t, c, victim), victim.Name, acked)
	if !strings.Contains(readFile(victim.LogPath()), "restored snapshot") {
		t.Errorf("follower %s did not install a snapshot:\n%s", victim.Name, victim.LogTail(30))
	}

	// Whole-cluster restart: every master restores from its snapshot and log.
	for _, m := range c.Masters {
		m.Kill()
	}
	for _, m := range c.Masters {
		m.Start()
	}
	for _, m := range c.Masters {
		m.WaitReady(30 * time.Second)
	}
	for _, m := range c.Masters {
		checkAcked(t, clientFor(t, c, m), m.Name, acked)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// TestLeaderStopped freezes the leader with SIGSTOP (longer than the
// election timeout): writes through a follower must reach the new leader
// rather than wait on the frozen one, and after SIGCONT the old leader
// rejoins as a follower with every acknowledged write.
func TestLeaderStopped(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	ctx := context.Background()
	leader := c.Leader(10 * time.Second)
	follower := otherThan(c, leader)
	cs := clientFor(t, c, follower)
	// Warm the follower's connection to the leader, so that forwarding is
	// in flight to it when it freezes.
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, configMap("before-stop", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := leader.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leader.Signal(syscall.SIGCONT) })
	acked := map[string]string{"before-stop": ""}
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("during-stop-%d", i)
		// Well under the 30 s forwarding timeout: the write must not wait
		// for the frozen leader.
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := cs.CoreV1().ConfigMaps("default").Create(wctx, configMap(name, map[string]string{"v": name}), metav1.CreateOptions{})
		cancel()
		if err != nil && !apierrors.IsTimeout(err) && !apierrors.IsServerTimeout(err) {
			t.Fatalf("write %s with the leader stopped: %v", name, err)
		}
		if err == nil {
			acked[name] = name
		}
	}
	if len(acked) < 5 {
		t.Fatalf("only %d of 5 writes succeeded with the old leader stopped", len(acked)-1)
	}
	if err := leader.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	leader.WaitReady(30 * time.Second)
	checkAcked(t, clientFor(t, c, leader), leader.Name, acked)
}

// TestDataDirLocked: a second server, or an agent, started on a running
// master's data dir stops at once with an error naming the holder, and
// the master keeps serving; once the master is gone the dir is free.
func TestDataDirLocked(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "owner"})
	m.Start()
	m.WaitReady(30 * time.Second)
	other := testutil.LoopbackAddr(t)
	for _, args := range [][]string{
		{"server", "--data-dir", m.DataDir, "--node-name", "intruder", "--bind-address", other, "--disable-agent"},
		{"agent", "--data-dir", m.DataDir, "--node-name", "intruder", "--bind-address", other, "--server", m.URL(), "--runtime", "fake"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, testutil.Binary(t), args...).CombinedOutput()
		late := ctx.Err()
		cancel()
		want := fmt.Sprintf("is in use by another skiff process (pid %d server)", m.Pid())
		if err == nil || late != nil || !strings.Contains(string(out), want) {
			t.Fatalf("skiff %s on a locked data dir: %v (deadline: %v)\n%s", args[0], err, late, out)
		}
	}
	if _, err := m.Clientset().CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("owner after the intruders: %v", err)
	}
	m.Kill() // kill -9: the kernel drops the lock
	m.Start()
	m.WaitReady(30 * time.Second)
}

// TestLeaderSIGTERMHandsOver: a leader stopped with SIGTERM hands its
// leadership to another voter before it exits (the others do not wait
// for an election timeout), and no acknowledged write is lost.
func TestLeaderSIGTERMHandsOver(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	ctx := context.Background()
	leader := c.Leader(10 * time.Second)
	follower := otherThan(c, leader)
	cs := clientFor(t, c, follower)
	acked := map[string]string{}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("before-term-%d", i)
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, configMap(name, map[string]string{"v": name}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		acked[name] = name
	}
	leader.Stop() // SIGTERM, waits for the exit
	log := leader.LogTail(200)
	if !strings.Contains(log, "leadership transferred before shutdown") {
		t.Fatalf("%s did not hand its leadership over:\n%s", leader.Name, log)
	}
	next := c.Leader(10 * time.Second)
	if next == leader {
		t.Fatalf("%s still counted as leader", leader.Name)
	}
	if _, err := clientFor(t, c, next).CoreV1().ConfigMaps("default").Create(ctx, configMap("after-term", nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("write after the hand-over: %v", err)
	}
	acked["after-term"] = ""
	checkAcked(t, clientFor(t, c, next), next.Name, acked)
}

// TestDuplicateMasterName: a master that joins under the name of a
// master that runs (the leader's, or a follower's) is refused with a
// message naming --node-name and exits; the cluster's members are
// unchanged. Before, the join was accepted: the voter entry moved to the
// newcomer's address, and serf logged name conflicts forever.
func TestDuplicateMasterName(t *testing.T) {
	c := testutil.StartCluster(t, 2)
	first := c.Masters[0]
	for _, name := range []string{"m1", "m2"} { // the leader's name, a follower's
		dup := testutil.NewMaster(t, testutil.MasterOptions{Name: name, Join: first.URL(), Token: first.Token()})
		dup.Start()
		testutil.WaitFor(t, 60*time.Second, "the duplicate "+name+" exits", func() error {
			if !dup.Exited() {
				return fmt.Errorf("still running")
			}
			return nil
		})
		log, err := os.ReadFile(dup.LogPath())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), "another --node-name") {
			t.Errorf("duplicate %s: the log does not say what to do:\n%s", name, log)
		}
		rows, err := c.Members(first)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"m1": first.IP, "m2": c.Masters[1].IP}
		if len(rows) != 2 {
			t.Fatalf("after the duplicate %s: members %+v", name, rows)
		}
		for _, r := range rows {
			if !strings.HasPrefix(r.RaftAddress, want[r.Name]+":") || r.Suffrage != "voter" || r.State != "ready" {
				t.Errorf("after the duplicate %s: member %+v, want a ready voter at %s", name, r, want[r.Name])
			}
		}
	}
}
