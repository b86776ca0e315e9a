package nodelifecycle_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/nodelifecycle"
)

// fakeGossip is a Gossip whose node states the test sets.
type fakeGossip struct {
	mu     sync.Mutex
	states map[string]nodelifecycle.GossipState
	ch     chan struct{}
}

func newFakeGossip() *fakeGossip {
	return &fakeGossip{states: map[string]nodelifecycle.GossipState{}, ch: make(chan struct{}, 1)}
}

func (f *fakeGossip) set(node string, down bool, status string) {
	f.put(node, nodelifecycle.GossipState{Down: down, Status: status, Since: time.Now()})
}

// put sets node's state and signals the change.
func (f *fakeGossip) put(node string, gs nodelifecycle.GossipState) {
	f.mu.Lock()
	f.states[node] = gs
	f.mu.Unlock()
	select {
	case f.ch <- struct{}{}:
	default:
	}
}

func (f *fakeGossip) NodeStates() map[string]nodelifecycle.GossipState {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]nodelifecycle.GossipState{}
	for k, v := range f.states {
		out[k] = v
	}
	return out
}

func (f *fakeGossip) Notify() (<-chan struct{}, func()) { return f.ch, func() {} }

func TestGossipCombinedWithLease(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.Namespace(corev1.NamespaceNodeLease)
	e.RunKubelet("n1", "n2", "n3")
	var alive1, alive2, alive3 atomic.Bool
	for _, a := range []*atomic.Bool{&alive1, &alive2, &alive3} {
		a.Store(true)
	}
	go heartbeat(e, "n1", &alive1)
	go heartbeat(e, "n2", &alive2)
	go heartbeat(e, "n3", &alive3)
	g := newFakeGossip()
	for _, n := range []string{"n1", "n2", "n3"} {
		g.set(n, false, "alive")
	}
	// The Lease grace period is long and the monitor period too: what
	// happens here within seconds comes from gossip events.
	c := nodelifecycle.New(e.CC, nodelifecycle.Options{GracePeriod: time.Minute, StartupGracePeriod: time.Minute,
		EvictionRate: 100, UnhealthyZoneThreshold: 0.55, LargeClusterSizeThreshold: 50, MonitorPeriod: time.Minute,
		Gossip: g, GossipLeaseSlack: time.Second})
	e.Start(func(ctx context.Context) { c.Run(ctx, 2) })

	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "short"}, Spec: corev1.PodSpec{NodeName: "n2",
		Containers: []corev1.Container{{Name: "c", Image: "i"}},
		Tolerations: []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists,
			Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(1))}}}}
	if _, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	node := func(name string) *corev1.Node {
		n, err := e.Client.CoreV1().Nodes().Get(e.Ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	ready := func(n *corev1.Node) *corev1.NodeCondition {
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == corev1.NodeReady {
				return &n.Status.Conditions[i]
			}
		}
		return nil
	}
	time.Sleep(time.Second) // the controller has seen renewals

	// Gossip calls n1 failed while its Lease is renewed: reported, not marked.
	g.set("n1", true, "failed")
	e.WaitFor(10*time.Second, "GossipMemberDown event for n1", func() error {
		evs, err := e.Client.CoreV1().Events("").List(e.Ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, ev := range evs.Items {
			if ev.Reason == "GossipMemberDown" && ev.InvolvedObject.Name == "n1" {
				return nil
			}
		}
		return controllertest.Errorf("no event among %d", len(evs.Items))
	})
	if r := ready(node("n1")); r == nil || r.Status != corev1.ConditionTrue || len(node("n1").Spec.Taints) != 0 {
		t.Fatalf("n1 marked although its Lease is renewed: %+v %+v", r, node("n1").Spec.Taints)
	}

	// n2 dies: its Lease stops, then gossip calls it failed: Unknown and
	// tainted at once, far inside the Lease grace period; its pod
	// tolerating 1 s is evicted.
	alive2.Store(false)
	time.Sleep(2 * time.Second) // longer than the slack
	g.set("n2", true, "failed")
	e.WaitFor(5*time.Second, "n2 Unknown and tainted", func() error {
		n := node("n2")
		r := ready(n)
		if r == nil || r.Status != corev1.ConditionUnknown || !strings.HasPrefix(r.Message, "gossip: node failed") {
			return controllertest.Errorf("ready %+v", r)
		}
		for _, t := range n.Spec.Taints {
			if t.Key == corev1.TaintNodeUnreachable && t.Effect == corev1.TaintEffectNoExecute {
				return nil
			}
		}
		return controllertest.Errorf("taints %+v", n.Spec.Taints)
	})
	e.WaitFor(10*time.Second, "pod on n2 evicted", func() error {
		if _, err := e.Client.CoreV1().Pods("default").Get(e.Ctx, "short", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return controllertest.Errorf("still there: %v", err)
		}
		return nil
	})

	// n2 comes back: alive in gossip, Lease renewed, the kubelet posts
	// Ready: untainted.
	alive2.Store(true)
	g.set("n2", false, "alive")
	n := node("n2")
	r := ready(n)
	r.Status, r.Reason, r.LastHeartbeatTime = corev1.ConditionTrue, "KubeletReady", metav1.Now()
	if _, err := e.Client.CoreV1().Nodes().UpdateStatus(e.Ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "n2 untainted", func() error {
		if n := node("n2"); len(n.Spec.Taints) != 0 {
			return controllertest.Errorf("taints %+v", n.Spec.Taints)
		}
		return nil
	})
	// n3's Lease stalls and gossip calls it left: marked Unknown once;
	// its kubelet then reports Ready while gossip still says left: it is
	// not marked again for that verdict (no flapping).
	alive3.Store(false)
	time.Sleep(2 * time.Second) // longer than the slack
	g.set("n3", true, "left")
	e.WaitFor(5*time.Second, "n3 Unknown", func() error {
		if r := ready(node("n3")); r == nil || r.Status != corev1.ConditionUnknown || r.Message != "gossip: node left" {
			return controllertest.Errorf("ready %+v", r)
		}
		return nil
	})
	// (The controller may be writing n3 too, its taints: retry on a
	// conflict as a kubelet does.)
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n := node("n3")
		r := ready(n)
		r.Status, r.Reason, r.Message, r.LastHeartbeatTime = corev1.ConditionTrue, "KubeletReady", "", metav1.Now()
		_, err := e.Client.CoreV1().Nodes().UpdateStatus(e.Ctx, n, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if r := ready(node("n3")); r == nil || r.Status != corev1.ConditionTrue {
		t.Fatalf("n3 marked again for the same gossip verdict: %+v", r)
	}
}

// gossipNodes starts nodes whose kubelets heartbeat while their alive
// flag is set, all alive in a fake gossip.
func gossipNodes(t *testing.T, names ...string) (*controllertest.Env, *fakeGossip, map[string]*atomic.Bool) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.Namespace(corev1.NamespaceNodeLease)
	e.RunKubelet(names...)
	g := newFakeGossip()
	alive := map[string]*atomic.Bool{}
	for _, n := range names {
		alive[n] = &atomic.Bool{}
		alive[n].Store(true)
		go heartbeat(e, n, alive[n])
		g.set(n, false, "alive")
	}
	return e, g, alive
}

// TestEvictionRateTokenDue: two nodes of a zone fail together; the first
// is tainted NoExecute at once, the second when the zone's next eviction
// token is due (1/EvictionRate = 2 s here), not at the next monitor pass
// (a minute away).
func TestEvictionRateTokenDue(t *testing.T) {
	e, g, alive := gossipNodes(t, "n1", "n2", "n3", "n4", "n5")
	c := nodelifecycle.New(e.CC, nodelifecycle.Options{GracePeriod: time.Minute, StartupGracePeriod: time.Minute,
		EvictionRate: 0.5, UnhealthyZoneThreshold: 0.55, LargeClusterSizeThreshold: 50, MonitorPeriod: time.Minute,
		Gossip: g, GossipLeaseSlack: time.Second})
	e.Start(func(ctx context.Context) { c.Run(ctx, 2) })
	time.Sleep(time.Second) // the controller has seen renewals

	alive["n2"].Store(false)
	alive["n3"].Store(false)
	time.Sleep(2 * time.Second) // longer than the slack
	failed := time.Now()
	g.set("n2", true, "failed")
	g.set("n3", true, "failed")
	tainted := map[string]time.Duration{}
	e.WaitFor(8*time.Second, "n2 and n3 tainted NoExecute", func() error {
		for _, name := range []string{"n2", "n3"} {
			if _, ok := tainted[name]; ok {
				continue
			}
			n, err := e.Client.CoreV1().Nodes().Get(e.Ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, tn := range n.Spec.Taints {
				if tn.Key == corev1.TaintNodeUnreachable && tn.Effect == corev1.TaintEffectNoExecute {
					tainted[name] = time.Since(failed)
				}
			}
		}
		if len(tainted) < 2 {
			return controllertest.Errorf("tainted so far: %v", tainted)
		}
		return nil
	})
	first, second := min(tainted["n2"], tainted["n3"]), max(tainted["n2"], tainted["n3"])
	t.Logf("tainted after %s and %s", first, second)
	// The rate holds: the second waits for its token.
	if second-first < 1500*time.Millisecond {
		t.Fatalf("second taint %s after the first, want about 2 s (EvictionRate 0.5)", second-first)
	}
}

// TestGossipPlannedStop: a node whose member announced a planned stop
// (SIGTERM) before gossip called it failed is left to its Lease: Ready
// until the grace period runs out, then Unknown for the Lease, not for
// gossip; a node that just dies (no announcement) is marked at once.
func TestGossipPlannedStop(t *testing.T) {
	e, g, alive := gossipNodes(t, "n1", "n2", "n3", "n4", "n5")
	grace := 4 * time.Second
	c := nodelifecycle.New(e.CC, nodelifecycle.Options{GracePeriod: grace, StartupGracePeriod: grace,
		EvictionRate: 100, UnhealthyZoneThreshold: 0.55, LargeClusterSizeThreshold: 50, MonitorPeriod: 200 * time.Millisecond,
		Gossip: g, GossipLeaseSlack: time.Second})
	e.Start(func(ctx context.Context) { c.Run(ctx, 2) })
	time.Sleep(time.Second) // the controller has seen renewals
	readyOf := func(name string) *corev1.NodeCondition {
		n, err := e.Client.CoreV1().Nodes().Get(e.Ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == corev1.NodeReady {
				return &n.Status.Conditions[i]
			}
		}
		return nil
	}

	alive["n2"].Store(false)
	alive["n3"].Store(false)
	stopped := time.Now()
	time.Sleep(1500 * time.Millisecond) // longer than the slack
	g.put("n2", nodelifecycle.GossipState{Down: true, Status: "failed", Since: time.Now(), Stopping: true})
	g.set("n3", true, "failed") // no announcement: a crash
	e.WaitFor(5*time.Second, "n3 Unknown from gossip", func() error {
		if r := readyOf("n3"); r == nil || r.Status != corev1.ConditionUnknown || !strings.HasPrefix(r.Message, "gossip: node failed") {
			return controllertest.Errorf("n3 ready %+v", r)
		}
		return nil
	})
	// n2 stays Ready while its Lease is within the grace period.
	for time.Since(stopped) < grace-time.Second {
		if r := readyOf("n2"); r == nil || r.Status != corev1.ConditionTrue {
			t.Fatalf("n2 marked %.1fs after its planned stop, inside the Lease grace: %+v", time.Since(stopped).Seconds(), r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.WaitFor(10*time.Second, "n2 Unknown once its Lease expired", func() error {
		r := readyOf("n2")
		if r == nil || r.Status != corev1.ConditionUnknown {
			return controllertest.Errorf("n2 ready %+v", r)
		}
		if strings.HasPrefix(r.Message, "gossip:") {
			t.Fatalf("n2 marked for gossip after a planned stop: %+v", r)
		}
		return nil
	})
}
