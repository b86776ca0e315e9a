package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// gossipCluster is a master (no embedded agent) and three hollow agents,
// one node each, on loopback addresses of their own.
type gossipCluster struct {
	t      *testing.T
	master *testutil.Master
	cs     *kubernetes.Clientset
	agents []*testutil.HollowNodes
}

func startGossipCluster(t *testing.T, n int) *gossipCluster {
	t.Helper()
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "gm"})
	m.Start()
	m.WaitReady(30 * time.Second)
	g := &gossipCluster{t: t, master: m, cs: m.Clientset()}
	for i := 0; i < n; i++ {
		g.agents = append(g.agents, g.newAgent(fmt.Sprintf("g%d", i)))
	}
	for _, a := range g.agents {
		a.Start()
	}
	for _, a := range g.agents {
		a.WaitReady(g.cs, 60*time.Second)
	}
	g.waitMembers(30*time.Second, "every member alive", func(ms map[string]testutil.GossipMember) error {
		for _, name := range g.nodeNames() {
			if ms[name].Status != "alive" {
				return fmt.Errorf("%s: %+v", name, ms[name])
			}
		}
		if ms["gm"].Status != "alive" || ms["gm"].Tags["role"] != "server" {
			return fmt.Errorf("master: %+v", ms["gm"])
		}
		return nil
	})
	return g
}

func (g *gossipCluster) newAgent(prefix string, args ...string) *testutil.HollowNodes {
	return testutil.NewHollowNodes(g.t, testutil.HollowOptions{Count: 1, Prefix: prefix, Server: g.master.URL(),
		Kubeconfig: g.master.Kubeconfig(), IP: testutil.LoopbackAddr(g.t), Args: args})
}

func (g *gossipCluster) nodeNames() []string {
	var out []string
	for _, a := range g.agents {
		out = append(out, a.NodeName(0))
	}
	return out
}

func (g *gossipCluster) waitMembers(timeout time.Duration, what string, cond func(map[string]testutil.GossipMember) error) {
	g.t.Helper()
	admin := g.master.HTTPClient()
	testutil.WaitFor(g.t, timeout, what, func() error {
		ms, err := testutil.GossipMembers(g.master, admin)
		if err != nil {
			return err
		}
		return cond(ms)
	})
}

func nodeReady(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func (g *gossipCluster) waitNode(timeout time.Duration, name, what string, cond func(*corev1.Node) error) {
	g.t.Helper()
	testutil.WaitFor(g.t, timeout, name+": "+what, func() error {
		n, err := g.cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		return cond(n)
	})
}

func readyIs(st corev1.ConditionStatus, msgPrefix string) func(*corev1.Node) error {
	return func(n *corev1.Node) error {
		r := nodeReady(n)
		if r == nil || r.Status != st || !strings.HasPrefix(r.Message, msgPrefix) {
			return fmt.Errorf("ready %+v", r)
		}
		return nil
	}
}

// tolerantReplicaSet runs replicas pods tolerating the unreachable taint
// for secs seconds.
func tolerantReplicaSet(t *testing.T, cs kubernetes.Interface, name string, replicas int32, secs int64) {
	t.Helper()
	labels := map[string]string{"app": name}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "c", Image: "example.com/app:1"}},
				Tolerations: []corev1.Toleration{
					{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs},
					{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs},
				}}}}}
	if _, err := cs.AppsV1().ReplicaSets("default").Create(context.Background(), rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// runningPods maps pod UID to node for running pods of app, not being deleted.
func runningPods(cs kubernetes.Interface, app string) (map[string]string, error) {
	pods, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out[string(p.UID)] = p.Spec.NodeName
		}
	}
	return out, nil
}

func waitRunning(t *testing.T, cs kubernetes.Interface, app string, n int, avoid string, timeout time.Duration) map[string]string {
	t.Helper()
	var got map[string]string
	testutil.WaitFor(t, timeout, fmt.Sprintf("%d pods of %s running off %q", n, app, avoid), func() error {
		var err error
		if got, err = runningPods(cs, app); err != nil {
			return err
		}
		count := 0
		for _, node := range got {
			if node != avoid {
				count++
			}
		}
		if count != n {
			return fmt.Errorf("running: %v", got)
		}
		return nil
	})
	return got
}

// TestGossipNodeFailure: kill -9 of an agent makes its Node Ready=Unknown
// through gossip (long before the 40 s Lease grace period), its pods
// tolerating unreachable for 5 s are evicted and replaced on the other
// nodes, and the restarted agent is Ready again.
func TestGossipNodeFailure(t *testing.T) {
	g := startGossipCluster(t, 3)
	tolerantReplicaSet(t, g.cs, "web", 6, 5)
	pods := waitRunning(t, g.cs, "web", 6, "", 60*time.Second)
	victim := -1
	for i, name := range g.nodeNames() {
		for _, node := range pods {
			if node == name && victim < 0 {
				victim = i
			}
		}
	}
	a, name := g.agents[victim], g.nodeNames()[victim]
	killed := time.Now()
	a.Kill()
	g.waitNode(30*time.Second, name, "Ready=Unknown from gossip", readyIs(corev1.ConditionUnknown, "gossip: node failed"))
	t.Logf("kill -9 → Node Unknown: %s", time.Since(killed).Round(time.Millisecond))
	g.waitNode(10*time.Second, name, "unreachable NoExecute taint", func(n *corev1.Node) error {
		for _, tn := range n.Spec.Taints {
			if tn.Key == corev1.TaintNodeUnreachable && tn.Effect == corev1.TaintEffectNoExecute {
				return nil
			}
		}
		return fmt.Errorf("taints %+v", n.Spec.Taints)
	})
	waitRunning(t, g.cs, "web", 6, name, 60*time.Second)
	t.Logf("kill -9 → 6 replicas running elsewhere: %s", time.Since(killed).Round(time.Millisecond))

	a.Start()
	g.waitNode(60*time.Second, name, "Ready again", readyIs(corev1.ConditionTrue, ""))
	g.waitMembers(30*time.Second, name+" alive again", func(ms map[string]testutil.GossipMember) error {
		if ms[name].Status != "alive" {
			return fmt.Errorf("%+v", ms[name])
		}
		return nil
	})
	g.waitNode(30*time.Second, name, "untainted", func(n *corev1.Node) error {
		for _, tn := range n.Spec.Taints {
			if tn.Key == corev1.TaintNodeUnreachable {
				return fmt.Errorf("taints %+v", n.Spec.Taints)
			}
		}
		return nil
	})
}

// TestGossipPauseNoEviction: an agent stopped (SIGSTOP) for less than its
// pods' toleration is marked Unknown by gossip, then Ready again after
// SIGCONT, and none of its pods is evicted.
func TestGossipPauseNoEviction(t *testing.T) {
	g := startGossipCluster(t, 3)
	tolerantReplicaSet(t, g.cs, "calm", 6, 60)
	before := waitRunning(t, g.cs, "calm", 6, "", 60*time.Second)
	a, name := g.agents[0], g.nodeNames()[0]
	if err := a.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			_ = a.Signal(syscall.SIGCONT)
		}
	})
	g.waitNode(30*time.Second, name, "Ready=Unknown from gossip while paused", readyIs(corev1.ConditionUnknown, "gossip:"))
	if err := a.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	g.waitNode(30*time.Second, name, "Ready after SIGCONT", readyIs(corev1.ConditionTrue, ""))
	g.waitNode(30*time.Second, name, "untainted", func(n *corev1.Node) error {
		if len(n.Spec.Taints) != 0 {
			return fmt.Errorf("taints %+v", n.Spec.Taints)
		}
		return nil
	})
	after, err := runningPods(g.cs, "calm")
	if err != nil {
		t.Fatal(err)
	}
	for uid, node := range before {
		if after[uid] != node {
			t.Errorf("pod %s on %s was evicted or moved (now %v)", uid, node, after)
		}
	}
}

// TestGossipKeysAndAddresses: a node with another gossip key is refused;
// the key is rotated with `skiff cluster gossip-key rotate` and a node
// joining afterwards gets the current key; an agent restarted under a
// new address keeps its Node and gossip name.
func TestGossipKeysAndAddresses(t *testing.T) {
	g := startGossipCluster(t, 2)
	ctx := context.Background()

	// Another key: the node runs (its Lease keeps it Ready) but gossip
	// refuses it.
	stranger := g.newAgent("stranger", "--gossip-key", "c3RyYW5nZXItc3RyYW5nZXItc3RyYW5nZXItMzJieXQ=")
	stranger.Start()
	stranger.WaitReady(g.cs, 60*time.Second)
	testutil.WaitFor(t, 30*time.Second, "the master refusing the stranger's gossip", func() error {
		b, _ := os.ReadFile(g.master.LogPath())
		// memberlist's message (capitalised before v0.6.0).
		if !strings.Contains(strings.ToLower(string(b)), "no installed keys could decrypt") {
			return fmt.Errorf("no decrypt failure logged yet")
		}
		return nil
	})
	ms, err := testutil.GossipMembers(g.master, g.master.HTTPClient())
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := ms[stranger.NodeName(0)]; ok {
		t.Fatalf("a node without the key is a member: %+v", m)
	}
	stranger.Kill()

	// Rotation: every member gets the new key, the old one is removed.
	out, err := g.master.Run(ctx, "cluster", "gossip-key", "rotate")
	if err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	t.Logf("rotate: %s", out)
	if !strings.Contains(out, "rotated") {
		t.Fatalf("rotate output: %s", out)
	}
	late := g.newAgent("late")
	late.Start()
	late.WaitReady(g.cs, 60*time.Second)
	g.waitMembers(30*time.Second, "the node started after the rotation alive", func(ms map[string]testutil.GossipMember) error {
		if ms[late.NodeName(0)].Status != "alive" {
			return fmt.Errorf("%+v", ms[late.NodeName(0)])
		}
		return nil
	})

	// A new address: same Node (UID), new InternalIP, same gossip name.
	a, name := g.agents[1], g.nodeNames()[1]
	node, err := g.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Kill()
	ip := testutil.LoopbackAddr(t)
	a.SetIP(ip)
	a.Start()
	g.waitNode(60*time.Second, name, "InternalIP "+ip, func(n *corev1.Node) error {
		if n.UID != node.UID {
			return fmt.Errorf("a new Node: uid %s, was %s", n.UID, node.UID)
		}
		for _, ad := range n.Status.Addresses {
			if ad.Type == corev1.NodeInternalIP && ad.Address == ip {
				return readyIs(corev1.ConditionTrue, "")(n)
			}
		}
		return fmt.Errorf("addresses %+v", n.Status.Addresses)
	})
	g.waitMembers(60*time.Second, name+" alive at "+ip, func(ms map[string]testutil.GossipMember) error {
		m := ms[name]
		if m.Status != "alive" || !strings.HasPrefix(m.Addr, ip+":") {
			return fmt.Errorf("%+v", m)
		}
		return nil
	})
}

// TestGossipMasterNewAddress: a master restarted under a new IP address
// (same name and data dir) gets its Raft address updated by the leader,
// with no operator action, and is a ready voter again.
func TestGossipMasterNewAddress(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	leader := c.Leader(30 * time.Second)
	var moved *testutil.Master
	for _, m := range c.Masters {
		if m != leader {
			moved = m
		}
	}
	old := moved.IP
	moved.Kill()
	moved.IP = testutil.LoopbackAddr(t)
	moved.Start()
	want := moved.IP + ":6444"
	t.Logf("%s: %s → %s", moved.Name, old, moved.IP)
	testutil.WaitFor(t, 90*time.Second, moved.Name+" a ready voter at "+want, func() error {
		rows, err := c.Members(leader)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if r.Name == moved.Name {
				if r.RaftAddress != want || r.State != "ready" || r.Suffrage != "voter" {
					return fmt.Errorf("%+v", r)
				}
				return nil
			}
		}
		return fmt.Errorf("%s not a member: %+v", moved.Name, rows)
	})
	testutil.WaitFor(t, 30*time.Second, moved.Name+" alive in gossip at "+moved.IP, func() error {
		ms, err := testutil.GossipMembers(leader, c.Admin)
		if err != nil {
			return err
		}
		if m := ms[moved.Name]; m.Status != "alive" || !strings.HasPrefix(m.Addr, moved.IP+":") {
			return fmt.Errorf("%+v", m)
		}
		return nil
	})
}

// TestGossipMasterSuspectedRenewsLease: a master whose embedded agent
// runs, stopped (SIGSTOP) long enough for the other member to suspect
// it, refutes the suspicion when it resumes and renews its node's Lease
// every 500 ms for a while (Server.SetGossipSuspectedHook →
// Agent.HeartbeatBurst), instead of every quarter of the Lease duration.
func TestGossipMasterSuspectedRenewsLease(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "sm", Agent: true, Args: []string{"--runtime", "fake"}})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	waitNodeReady(t, cs, "sm")
	prober := testutil.NewHollowNodes(t, testutil.HollowOptions{Count: 1, Prefix: "probe", Server: m.URL(),
		Kubeconfig: m.Kubeconfig(), IP: testutil.LoopbackAddr(t)})
	prober.Start()
	prober.WaitReady(cs, 60*time.Second)
	g := &gossipCluster{t: t, master: m, cs: cs}
	g.waitMembers(30*time.Second, "both members alive", func(ms map[string]testutil.GossipMember) error {
		if ms["sm"].Status != "alive" || ms[prober.NodeName(0)].Status != "alive" {
			return fmt.Errorf("%+v", ms)
		}
		return nil
	})

	// renewals counts the distinct renewTimes of sm's Lease seen by a
	// watch during d.
	renewals := func(d time.Duration) int {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		w, err := cs.CoordinationV1().Leases("kube-node-lease").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=sm"})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		seen := map[string]bool{}
		for ev := range w.ResultChan() {
			if l, ok := ev.Object.(*coordinationv1.Lease); ok && l.Spec.RenewTime != nil {
				seen[l.Spec.RenewTime.String()] = true
			}
		}
		return len(seen)
	}
	// Before: renewed every 5 s (a 20 s Lease); the watch's initial
	// event counts for one.
	if n := renewals(3 * time.Second); n > 2 {
		t.Fatalf("%d Lease renewals in 3 s before any suspicion", n)
	}
	logFrom := int64(0)
	if fi, err := os.Stat(m.LogPath()); err == nil {
		logFrom = fi.Size()
	}
	if err := m.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			_ = m.Signal(syscall.SIGCONT)
		}
	})
	// The prober probes every 400 ms; 2.5 s is several missed probes.
	time.Sleep(2500 * time.Millisecond)
	if err := m.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	testutil.WaitFor(t, 10*time.Second, "sm refutes the suspicion and starts a heartbeat burst", func() error {
		b, err := os.ReadFile(m.LogPath())
		if err != nil {
			return err
		}
		if !strings.Contains(string(b[logFrom:]), "suspected by gossip: renewing the Lease every 500ms") {
			return fmt.Errorf("no burst in the log yet")
		}
		return nil
	})
	if n := renewals(3 * time.Second); n < 4 {
		t.Fatalf("%d Lease renewals in 3 s after the suspicion, want ≥ 4 (every 500 ms)", n)
	}
}

// TestGossipPlannedStop: an agent stopped with SIGTERM (a restart, an
// upgrade) announces it in gossip before it goes; gossip then calls it
// failed, but its Node stays Ready (the Lease decides, as in Kubernetes)
// and comes back alive when it restarts. A kill -9 is marked at once
// (TestGossipNodeFailure).
func TestGossipPlannedStop(t *testing.T) {
	g := startGossipCluster(t, 2)
	a, name := g.agents[0], g.nodeNames()[0]
	a.Stop() // SIGTERM, waits for the exit
	g.waitMembers(30*time.Second, name+" failed in gossip, announced as stopping", func(ms map[string]testutil.GossipMember) error {
		if m := ms[name]; m.Status != "failed" || m.Tags["stopping"] == "" {
			return fmt.Errorf("%+v", m)
		}
		return nil
	})
	// Gossip's verdict is in; the node lifecycle controller acts on it
	// within a monitor pass if it would: give it 3 s.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		n, err := g.cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r := nodeReady(n); r == nil || r.Status != corev1.ConditionTrue || len(n.Spec.Taints) != 0 {
			t.Fatalf("%s marked after a planned stop: %+v, taints %+v", name, r, n.Spec.Taints)
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.Start()
	g.waitMembers(30*time.Second, name+" alive again, no longer stopping", func(ms map[string]testutil.GossipMember) error {
		if m := ms[name]; m.Status != "alive" || m.Tags["stopping"] != "" {
			return fmt.Errorf("%+v", m)
		}
		return nil
	})
	g.waitNode(30*time.Second, name, "Ready", readyIs(corev1.ConditionTrue, ""))
}
