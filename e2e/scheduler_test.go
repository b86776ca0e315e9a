package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// schedEnv is one master (no embedded agent) and four hollow nodes of 2
// CPUs in two zones: hollow-0 and hollow-2 in zone-0, hollow-1 and
// hollow-3 in zone-1.
type schedEnv struct {
	t  *testing.T
	m  *testutil.Master
	cs *kubernetes.Clientset
	h  *testutil.HollowNodes
}

func startSchedEnv(t *testing.T) *schedEnv {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "sched"})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	h := testutil.NewHollowNodes(t, testutil.HollowOptions{Count: 4, Server: m.URL(), Kubeconfig: m.Kubeconfig(),
		Args: []string{"--hollow-zones", "2", "--hollow-node-cpu", "2"}})
	h.Start()
	h.WaitReady(cs, 60*time.Second)
	return &schedEnv{t: t, m: m, cs: cs, h: h}
}

func (e *schedEnv) namespace(name string) string {
	e.t.Helper()
	if _, err := e.cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	return name
}

type schedPodOpt func(*corev1.Pod)

func cpu(v string) schedPodOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(v)}
	}
}

func selector(kv ...string) schedPodOpt {
	return func(p *corev1.Pod) {
		if p.Spec.NodeSelector == nil {
			p.Spec.NodeSelector = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Spec.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}

func labeled(kv ...string) schedPodOpt {
	return func(p *corev1.Pod) {
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func (e *schedEnv) create(ns, name string, opts ...schedPodOpt) {
	e.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/app:1"}},
			TerminationGracePeriodSeconds: new(int64)},
	}
	for _, o := range opts {
		o(p)
	}
	if _, err := e.cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
}

// bound waits until the pod is bound and returns its node.
func (e *schedEnv) bound(ns, name string) string {
	e.t.Helper()
	var node string
	testutil.WaitFor(e.t, 30*time.Second, "pod "+name+" bound", func() error {
		p, err := e.cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Spec.NodeName == "" {
			return fmt.Errorf("unbound; conditions %v", p.Status.Conditions)
		}
		node = p.Spec.NodeName
		return nil
	})
	return node
}

// unschedulable waits for PodScheduled=False reason Unschedulable and
// returns the message.
func (e *schedEnv) unschedulable(ns, name string) string {
	e.t.Helper()
	var msg string
	testutil.WaitFor(e.t, 30*time.Second, "pod "+name+" unschedulable", func() error {
		p, err := e.cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Spec.NodeName != "" {
			return fmt.Errorf("bound to %s", p.Spec.NodeName)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				msg = c.Message
				return nil
			}
		}
		return fmt.Errorf("conditions %v", p.Status.Conditions)
	})
	return msg
}

// event waits for an event of reason about the pod and returns its
// message.
func (e *schedEnv) event(ns, pod, reason string) string {
	e.t.Helper()
	var msg string
	testutil.WaitFor(e.t, 30*time.Second, reason+" event for "+pod, func() error {
		evs, err := e.cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", pod).String()})
		if err != nil {
			return err
		}
		for _, ev := range evs.Items {
			if ev.Reason == reason {
				msg = ev.Message
				return nil
			}
		}
		return fmt.Errorf("%d events, none %s", len(evs.Items), reason)
	})
	return msg
}

func (e *schedEnv) running(ns, name string) {
	e.t.Helper()
	waitPodPhase(e.t, e.cs, ns, name, corev1.PodRunning)
}

// TestScheduler runs the leader's scheduler against four hollow nodes.
func TestScheduler(t *testing.T) {
	e := startSchedEnv(t)
	t.Run("ResourcesFit", func(t *testing.T) { e.t = t; schedResourcesFit(e) })
	t.Run("NodeSelector", func(t *testing.T) { e.t = t; schedNodeSelector(e) })
	t.Run("AntiAffinitySpreads", func(t *testing.T) { e.t = t; schedAntiAffinity(e) })
	t.Run("TopologySpread", func(t *testing.T) { e.t = t; schedTopologySpread(e) })
	t.Run("Preemption", func(t *testing.T) { e.t = t; schedPreemption(e) })
	t.Run("TaintsAndTolerations", func(t *testing.T) { e.t = t; schedTaints(e) })
	t.Run("SchedulingGates", func(t *testing.T) { e.t = t; schedGates(e) })
}

func schedGates(e *schedEnv) {
	ns := e.namespace("gates")
	e.create(ns, "gated", func(p *corev1.Pod) { p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/wait"}} })
	e.create(ns, "free")
	e.bound(ns, "free")
	p, err := e.cs.CoreV1().Pods(ns).Get(context.Background(), "gated", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	if p.Spec.NodeName != "" {
		e.t.Fatalf("a gated pod was bound to %s", p.Spec.NodeName)
	}
	patch := []byte(`{"spec":{"schedulingGates":null}}`)
	if _, err := e.cs.CoreV1().Pods(ns).Patch(context.Background(), "gated", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.bound(ns, "gated")
	e.deleteAll(ns)
}

func schedResourcesFit(e *schedEnv) {
	ns := e.namespace("fit")
	// Fill both zone-0 nodes to 1 of their 2 CPUs (bound by name, no
	// scheduler involved).
	e.create(ns, "fill-0", cpu("1"), func(p *corev1.Pod) { p.Spec.NodeName = e.h.NodeName(0) })
	e.create(ns, "fill-2", cpu("1"), func(p *corev1.Pod) { p.Spec.NodeName = e.h.NodeName(2) })
	e.create(ns, "big", cpu("1500m"), selector(corev1.LabelTopologyZone, "zone-0"))
	msg := e.unschedulable(ns, "big")
	want := "0/4 nodes are available: 2 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. " +
		"preemption: 0/4 nodes are available: 2 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
	if msg != want {
		e.t.Errorf("unschedulable message:\n got  %q\n want %q", msg, want)
	}
	if ev := e.event(ns, "big", "FailedScheduling"); ev != want {
		e.t.Errorf("FailedScheduling event: %q", ev)
	}
	// More than any node has: preemption cannot help anywhere.
	e.create(ns, "huge", cpu("3"))
	if msg := e.unschedulable(ns, "huge"); !strings.HasPrefix(msg, "0/4 nodes are available: 4 Insufficient cpu. preemption: 0/4 nodes are available: 4 Preemption is not helpful") {
		e.t.Errorf("huge: %q", msg)
	}
	// A pod that fits goes to a zone-0 node... once room is made: deleting
	// fill-0 frees a CPU and the waiting pod is retried.
	if err := e.cs.CoreV1().Pods(ns).Delete(context.Background(), "fill-0", metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if node := e.bound(ns, "big"); node != e.h.NodeName(0) {
		e.t.Errorf("big bound to %s, want %s", node, e.h.NodeName(0))
	}
	e.running(ns, "big")
	if ev := e.event(ns, "big", "Scheduled"); ev != "Successfully assigned fit/big to "+e.h.NodeName(0) {
		e.t.Errorf("Scheduled event: %q", ev)
	}
	e.deleteAll(ns)
}

func (e *schedEnv) deleteAll(ns string) {
	e.t.Helper()
	zero := int64(0)
	if err := e.cs.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
		e.t.Fatal(err)
	}
	testutil.WaitFor(e.t, 60*time.Second, "pods of "+ns+" gone", func() error {
		l, err := e.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(l.Items) > 0 {
			return fmt.Errorf("%d left", len(l.Items))
		}
		return nil
	})
}

func schedNodeSelector(e *schedEnv) {
	ns := e.namespace("selector")
	for i := 0; i < 3; i++ {
		e.create(ns, fmt.Sprintf("p%d", i), selector(corev1.LabelHostname, e.h.NodeName(3)))
	}
	for i := 0; i < 3; i++ {
		if node := e.bound(ns, fmt.Sprintf("p%d", i)); node != e.h.NodeName(3) {
			e.t.Errorf("p%d on %s", i, node)
		}
	}
	e.create(ns, "nowhere", selector("disk", "ssd"))
	if msg := e.unschedulable(ns, "nowhere"); !strings.HasPrefix(msg, "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector.") {
		e.t.Errorf("nowhere: %q", msg)
	}
	// A label appears: the waiting pod is retried at once.
	patch := []byte(`{"metadata":{"labels":{"disk":"ssd"}}}`)
	if _, err := e.cs.CoreV1().Nodes().Patch(context.Background(), e.h.NodeName(1), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if node := e.bound(ns, "nowhere"); node != e.h.NodeName(1) {
		e.t.Errorf("nowhere bound to %s", node)
	}
	e.deleteAll(ns)
}

func antiAffinity(app, key string) schedPodOpt {
	return func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				TopologyKey: key, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}}}}
	}
}

func schedAntiAffinity(e *schedEnv) {
	ns := e.namespace("anti")
	seen := map[string]string{}
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("web-%d", i)
		e.create(ns, name, labeled("app", "web"), antiAffinity("web", corev1.LabelHostname))
		node := e.bound(ns, name)
		if other, dup := seen[node]; dup {
			e.t.Errorf("%s and %s both on %s", other, name, node)
		}
		seen[node] = name
	}
	e.create(ns, "web-4", labeled("app", "web"), antiAffinity("web", corev1.LabelHostname))
	if msg := e.unschedulable(ns, "web-4"); !strings.HasPrefix(msg, "0/4 nodes are available: 4 node(s) didn't match pod anti-affinity rules.") {
		e.t.Errorf("web-4: %q", msg)
	}
	e.deleteAll(ns)
}

func schedTopologySpread(e *schedEnv) {
	ns := e.namespace("spread")
	zones := map[string]int{}
	zoneOf := map[string]string{}
	for i := 0; i < 4; i++ {
		n, err := e.cs.CoreV1().Nodes().Get(context.Background(), e.h.NodeName(i), metav1.GetOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		zoneOf[n.Name] = n.Labels[corev1.LabelTopologyZone]
	}
	for i := 0; i < 6; i++ {
		name := fmt.Sprintf("s%d", i)
		e.create(ns, name, labeled("app", "spread"), func(p *corev1.Pod) {
			p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone,
				WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "spread"}}}}
			// Push every pod towards zone-0: only the constraint keeps
			// the zones even.
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
				Weight: 100, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"zone-0"}}}}}}}}
		})
		zones[zoneOf[e.bound(ns, name)]]++
		if d := zones["zone-0"] - zones["zone-1"]; d > 1 || d < -1 {
			e.t.Fatalf("skew after %d pods: %v", i+1, zones)
		}
	}
	if zones["zone-0"] != 3 || zones["zone-1"] != 3 {
		e.t.Errorf("zones %v", zones)
	}
	e.deleteAll(ns)
}

func schedPreemption(e *schedEnv) {
	ns := e.namespace("preempt")
	pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "e2e-high"}, Value: 1000}
	if _, err := e.cs.SchedulingV1().PriorityClasses().Create(context.Background(), pc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
	target := e.h.NodeName(2)
	e.create(ns, "low", cpu("1500m"), selector(corev1.LabelHostname, target))
	e.bound(ns, "low")
	e.running(ns, "low")
	e.create(ns, "high", cpu("1"), selector(corev1.LabelHostname, target), func(p *corev1.Pod) { p.Spec.PriorityClassName = "e2e-high" })
	if node := e.bound(ns, "high"); node != target {
		e.t.Errorf("high bound to %s", node)
	}
	if ev := e.event(ns, "low", "Preempted"); !strings.Contains(ev, "on node "+target) {
		e.t.Errorf("Preempted event: %q", ev)
	}
	testutil.WaitFor(e.t, 30*time.Second, "victim deleted", func() error {
		if _, err := e.cs.CoreV1().Pods(ns).Get(context.Background(), "low", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("low still there (%v)", err)
		}
		return nil
	})
	e.running(ns, "high")
	e.deleteAll(ns)
}

func schedTaints(e *schedEnv) {
	ns := e.namespace("taints")
	tainted := e.h.NodeName(1)
	patch := []byte(`{"spec":{"taints":[{"key":"dedicated","value":"db","effect":"NoSchedule"}]}}`)
	if _, err := e.cs.CoreV1().Nodes().Patch(context.Background(), tainted, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		e.t.Fatal(err)
	}
	defer func() {
		_, _ = e.cs.CoreV1().Nodes().Patch(context.Background(), tainted, types.MergePatchType, []byte(`{"spec":{"taints":null}}`), metav1.PatchOptions{})
	}()
	// zone-1 holds the tainted node and one other: pods without the
	// toleration all go to the other.
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("plain-%d", i)
		e.create(ns, name, selector(corev1.LabelTopologyZone, "zone-1"))
		if node := e.bound(ns, name); node == tainted {
			e.t.Errorf("%s placed on the tainted node", name)
		}
	}
	e.create(ns, "pinned", selector(corev1.LabelHostname, tainted))
	want := "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 3 node(s) didn't match Pod's node affinity/selector."
	if msg := e.unschedulable(ns, "pinned"); !strings.HasPrefix(msg, want) {
		e.t.Errorf("pinned:\n got  %q\n want %q...", msg, want)
	}
	e.create(ns, "tolerant", selector(corev1.LabelHostname, tainted), func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}}
	})
	if node := e.bound(ns, "tolerant"); node != tainted {
		e.t.Errorf("tolerant on %s", node)
	}
	e.running(ns, "tolerant")
	e.deleteAll(ns)
}

// TestSchedulerLeaderFailover kills the leader while pods wait to be
// scheduled: pods the old leader found unschedulable, and pods created
// after the kill, are all bound by the new leader's scheduler, each once.
func TestSchedulerLeaderFailover(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	leader := c.Leader(30 * time.Second)
	survivor := otherThan(c, leader)
	cs := clientFor(t, c, survivor)
	h := testutil.NewHollowNodes(t, testutil.HollowOptions{Count: 5, Server: survivor.URL(), Kubeconfig: c.Masters[0].Kubeconfig()})
	h.Start()
	h.WaitReady(cs, 60*time.Second)
	ctx := context.Background()
	const ns = "failover"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	create := func(prefix string, n int, nodeSelector map[string]string) {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < n; i += 8 {
					p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, i)},
						Spec: corev1.PodSpec{NodeSelector: nodeSelector, Containers: []corev1.Container{{Name: "c", Image: "example.com/app:1"}}}}
					// Writes during the election may time out: retry.
					err := testutil.Poll(30*time.Second, func() error {
						_, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
						if apierrors.IsAlreadyExists(err) {
							return nil
						}
						return err
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	pods := func() []corev1.Pod {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	waitAll := func(what string, cond func(p *corev1.Pod) error) {
		testutil.WaitFor(t, 90*time.Second, what, func() error {
			for _, p := range pods() {
				if err := cond(&p); err != nil {
					return fmt.Errorf("%s: %w", p.Name, err)
				}
			}
			return nil
		})
	}
	bound := func(p *corev1.Pod) error {
		if p.Spec.NodeName == "" {
			return fmt.Errorf("unbound")
		}
		return nil
	}

	// The old leader binds a first wave, and finds a second one
	// unschedulable (no node has the label yet).
	create("a", 100, nil)
	waitAll("the first wave bound", bound)
	wave2 := map[string]string{"wave": "2"}
	create("b", 100, wave2)
	waitAll("the second wave unschedulable", func(p *corev1.Pod) error {
		if p.Spec.NodeSelector == nil {
			return nil
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonUnschedulable {
				return nil
			}
		}
		return fmt.Errorf("not marked unschedulable")
	})

	leader.Kill()
	t.Logf("killed leader %s", leader.Name)
	for i := 0; i < h.Count; i++ {
		patch := []byte(`{"metadata":{"labels":{"wave":"2"}}}`)
		if err := testutil.Poll(30*time.Second, func() error {
			_, err := cs.CoreV1().Nodes().Patch(ctx, h.NodeName(i), types.MergePatchType, patch, metav1.PatchOptions{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	create("c", 100, nil)
	waitAll("every pod bound by the new leader", bound)
	if newLeader := c.Leader(30 * time.Second); newLeader == leader {
		t.Fatal("the killed master leads")
	}
	nodes := map[string]int{}
	all := pods()
	if len(all) != 300 {
		t.Fatalf("%d pods", len(all))
	}
	for _, p := range all {
		if !strings.HasPrefix(p.Spec.NodeName, h.Prefix+"-") {
			t.Errorf("%s bound to %q", p.Name, p.Spec.NodeName)
		}
		nodes[p.Spec.NodeName]++
	}
	if len(nodes) != h.Count {
		t.Errorf("pods per node %v: every node should have some", nodes)
	}
	waitAll("every pod running", func(p *corev1.Pod) error {
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		return nil
	})
}
