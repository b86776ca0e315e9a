package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func scheduleOn(t *testing.T, snap *Snapshot, p *corev1.Pod) (scheduleResult, *CycleState, error) {
	t.Helper()
	a := newAlgorithm(NewDefaultFramework(nil, 2), 0)
	state := NewCycleState()
	res, err := a.schedule(context.Background(), state, info(p), snap)
	return res, state, err
}

func TestFitErrorMessage(t *testing.T) {
	snap := NewSnapshot(
		nodeInfo(node("small", alloc("1", "1Gi", "110"))),
		nodeInfo(node("a", nodeLabels("disk", "hdd"))),
		nodeInfo(node("b", nodeLabels("disk", "hdd"))),
	)
	p := pod("p", requests("2", ""), func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} })
	// Filters stop at the first rejection: NodeAffinity runs before
	// NodeResourcesFit, so every node reports the selector.
	_, _, err := scheduleOn(t, snap, p)
	var fe *FitError
	if !errors.As(err, &fe) {
		t.Fatalf("want a FitError, got %v", err)
	}
	expectEqual(t, "message", fe.Error(), "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.")

	p = pod("p", requests("2", ""), func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "hdd"} })
	snap = NewSnapshot(
		nodeInfo(node("small", alloc("1", "1Gi", "110"), nodeLabels("disk", "hdd"))),
		nodeInfo(node("a", nodeLabels("disk", "ssd"))),
		nodeInfo(node("b", nodeLabels("disk", "ssd"))),
	)
	_, state, err := scheduleOn(t, snap, p)
	if !errors.As(err, &fe) {
		t.Fatalf("want a FitError, got %v", err)
	}
	a := newAlgorithm(NewDefaultFramework(nil, 2), 0)
	fe.Diagnosis.PostFilterMsg = a.preempt(context.Background(), state, info(p), snap, fe.Diagnosis).Msg
	expectEqual(t, "message", fe.Error(), "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. "+
		"preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")
}

func TestNoNodes(t *testing.T) {
	_, _, err := scheduleOn(t, NewSnapshot(), pod("p"))
	if !errors.Is(err, ErrNoNodesAvailable) {
		t.Fatalf("got %v", err)
	}
}

func TestScheduleSpreadsAndFits(t *testing.T) {
	var infos []*NodeInfo
	for i := 0; i < 5; i++ {
		infos = append(infos, nodeInfo(node(fmt.Sprintf("n%d", i), alloc("2", "4Gi", "110"))))
	}
	snap := NewSnapshot(infos...)
	cache := NewCache(0, nil)
	for _, ni := range infos {
		cache.AddNode(ni.Node())
	}
	a := newAlgorithm(NewDefaultFramework(nil, 2), 0)
	count := map[string]int{}
	for i := 0; i < 10; i++ {
		cache.UpdateSnapshot(snap)
		p := pod(fmt.Sprintf("p%d", i), requests("1", "1Gi"))
		res, err := a.schedule(context.Background(), NewCycleState(), info(p), snap)
		if err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
		count[res.Node]++
		p.Spec.NodeName = res.Node
		cache.AssumePod(info(p), res.Node)
	}
	for n, c := range count {
		if c != 2 {
			t.Errorf("least allocated should spread 10 pods 2 per node: %v (%s)", count, n)
			break
		}
	}
	cache.UpdateSnapshot(snap)
	_, err := a.schedule(context.Background(), NewCycleState(), info(pod("extra", requests("1", ""))), snap)
	if err == nil || !strings.Contains(err.Error(), "0/5 nodes are available: 5 Insufficient cpu.") {
		t.Errorf("a full cluster: %v", err)
	}
}

func TestNumFeasibleNodesToFind(t *testing.T) {
	for _, tc := range []struct{ nodes, pct, want int }{
		{10, 0, 10}, {99, 0, 99}, {100, 0, 50 * 100 / 100}, {1000, 0, 420}, {5000, 0, 500}, {20000, 0, 1000},
		{1000, 100, 1000}, {1000, 5, 100}, {1000, 30, 300},
	} {
		want := max(tc.want, min(tc.nodes, minFeasibleNodesToFind))
		expectEqual(t, fmt.Sprintf("%d nodes at %d%%", tc.nodes, tc.pct), numFeasibleNodesToFind(tc.nodes, tc.pct), want)
	}
}

func TestSamplingRotatesStart(t *testing.T) {
	var infos []*NodeInfo
	for i := 0; i < 400; i++ {
		infos = append(infos, nodeInfo(node(fmt.Sprintf("n%03d", i))))
	}
	snap := NewSnapshot(infos...)
	a := newAlgorithm(NewDefaultFramework(nil, 2), 10) // 10% of 400 → at least 100
	res, err := a.schedule(context.Background(), NewCycleState(), info(pod("p")), snap)
	if err != nil {
		t.Fatal(err)
	}
	if res.Feasible != 100 {
		t.Errorf("feasible %d, want 100 (sampling)", res.Feasible)
	}
	if a.nextStart < 100 {
		t.Errorf("next start %d: the next attempt should begin where this one stopped", a.nextStart)
	}
}

func TestPreemption(t *testing.T) {
	low := func(name, cpu string) *corev1.Pod { return pod(name, requests(cpu, ""), priority(1)) }
	mid := func(name, cpu string) *corev1.Pod { return pod(name, requests(cpu, ""), priority(50)) }
	snap := NewSnapshot(
		nodeInfo(node("n1", alloc("4", "8Gi", "110")), low("l1", "2"), low("l2", "2")),
		nodeInfo(node("n2", alloc("4", "8Gi", "110")), mid("m1", "3"), low("l3", "1")),
		nodeInfo(node("tainted", alloc("4", "8Gi", "110"), taint("x", "", corev1.TaintEffectNoSchedule)), low("l4", "4")),
	)
	p := pod("vip", requests("2", ""), priority(100))
	_, state, err := scheduleOn(t, snap, p)
	var fe *FitError
	if !errors.As(err, &fe) {
		t.Fatalf("want a FitError, got %v", err)
	}
	a := newAlgorithm(NewDefaultFramework(nil, 2), 0)
	res := a.preempt(context.Background(), state, info(p), snap, fe.Diagnosis)
	// n1: evicting one priority-1 pod frees 2 CPUs; n2 would need the
	// priority-50 pod. The tainted node does not count.
	if res.Node != "n1" || len(res.Victims) != 1 || res.Victims[0].Priority != 1 {
		t.Fatalf("preemption: node %q victims %s msg %q", res.Node, describeVictims(res.Victims), res.Msg)
	}

	// A pod of the lowest priority finds no victims.
	lowly := pod("lowly", requests("2", ""), priority(0))
	_, state, err = scheduleOn(t, snap, lowly)
	if !errors.As(err, &fe) {
		t.Fatalf("want a FitError, got %v", err)
	}
	res = a.preempt(context.Background(), state, info(lowly), snap, fe.Diagnosis)
	expectEqual(t, "message", res.Msg, "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.")

	never := pod("never", requests("2", ""), priority(100), func(p *corev1.Pod) {
		n := corev1.PreemptNever
		p.Spec.PreemptionPolicy = &n
	})
	res = a.preempt(context.Background(), state, info(never), snap, fe.Diagnosis)
	expectEqual(t, "never", res.Msg, "preemption: not eligible due to preemptionPolicy=Never.")
}

func TestPreemptionRespectsAntiAffinity(t *testing.T) {
	// The only way in is to evict the low-priority web pod the incoming
	// pod's anti-affinity forbids, even though resources are plenty.
	web := pod("w", podLabels("app", "web"), priority(1))
	snap := NewSnapshot(nodeInfo(node("n1"), web))
	p := pod("p", priority(10), podAntiAffinity(term(corev1.LabelHostname, labelSelector("app", "web"))))
	_, state, err := scheduleOn(t, snap, p)
	var fe *FitError
	if !errors.As(err, &fe) {
		t.Fatalf("want a FitError, got %v", err)
	}
	a := newAlgorithm(NewDefaultFramework(nil, 2), 0)
	res := a.preempt(context.Background(), state, info(p), snap, fe.Diagnosis)
	if res.Node != "n1" || len(res.Victims) != 1 || res.Victims[0].Pod.Name != "w" {
		t.Fatalf("preemption: node %q victims %s msg %q", res.Node, describeVictims(res.Victims), res.Msg)
	}
}

func TestNominatedPodsKeepTheirRoom(t *testing.T) {
	snap := NewSnapshot(nodeInfo(node("n1", alloc("2", "4Gi", "110"))))
	snap.Nominated = map[string][]*PodInfo{"n1": {info(pod("nominee", requests("2", ""), priority(100)))}}
	_, _, err := scheduleOn(t, snap, pod("p", requests("1", ""), priority(5)))
	if err == nil {
		t.Fatal("a lower-priority pod must not take the room kept for a nominated pod")
	}
	if _, _, err := scheduleOn(t, snap, pod("p", requests("1", ""), priority(500))); err != nil {
		t.Fatalf("a higher-priority pod ignores lower nominations: %v", err)
	}
}
