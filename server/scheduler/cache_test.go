package scheduler

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestCacheAssumeConfirmForget(t *testing.T) {
	c := NewCache(30*time.Second, nil)
	c.AddNode(node("n1"))
	c.AddNode(node("n2"))
	snap := NewSnapshot()
	c.UpdateSnapshot(snap)
	if snap.NumNodes() != 2 {
		t.Fatalf("nodes %d", snap.NumNodes())
	}
	before := snap.Get("n2")

	p := pod("p", requests("1", ""), onNode("n1"))
	c.AssumePod(info(p), "n1")
	c.UpdateSnapshot(snap)
	if got := snap.Get("n1").Requested.MilliCPU; got != 1000 {
		t.Fatalf("assumed pod not counted: %d", got)
	}
	if snap.Get("n2") != before {
		t.Error("an unchanged node was cloned again")
	}
	// The informer shows it bound: confirmed, counted once.
	c.SetPod(info(p))
	c.UpdateSnapshot(snap)
	if got := snap.Get("n1").Requested.MilliCPU; got != 1000 || len(snap.Get("n1").Pods) != 1 {
		t.Fatalf("after confirm: %d mCPU, %d pods", got, len(snap.Get("n1").Pods))
	}
	if c.IsAssumed(p.UID) {
		t.Error("still assumed after the informer confirmed it")
	}

	q := pod("q", requests("2", ""), onNode("n2"))
	c.AssumePod(info(q), "n2")
	c.ForgetPod(q.UID)
	c.UpdateSnapshot(snap)
	if got := snap.Get("n2").Requested.MilliCPU; got != 0 {
		t.Fatalf("forgotten pod still counted: %d", got)
	}
}

func TestCacheAssumedExpiry(t *testing.T) {
	clock := newClock()
	c := NewCache(30*time.Second, clock.now)
	c.AddNode(node("n1"))
	p := pod("p", onNode("n1"))
	c.AssumePod(info(p), "n1")
	clock.step(time.Hour)
	if len(c.cleanupAssumed()) != 0 {
		t.Fatal("an assumed pod whose binding is in flight never expires")
	}
	c.FinishBinding(p.UID)
	clock.step(31 * time.Second)
	if got := c.cleanupAssumed(); len(got) != 1 {
		t.Fatalf("expired: %d", len(got))
	}
}

func TestCacheTerminalAndRemovedNodes(t *testing.T) {
	c := NewCache(0, nil)
	c.AddNode(node("n1"))
	p := pod("p", requests("1", ""), onNode("n1"))
	c.SetPod(info(p))
	done := p.DeepCopy()
	done.Status.Phase = corev1.PodSucceeded
	c.SetPod(info(done))
	snap := NewSnapshot()
	c.UpdateSnapshot(snap)
	if len(snap.Get("n1").Pods) != 0 {
		t.Fatal("a finished pod uses no resources")
	}
	c.RemoveNode("n1")
	c.UpdateSnapshot(snap)
	if snap.NumNodes() != 0 {
		t.Fatal("removed node still in the snapshot")
	}
	// Pods of a node the cache has not seen wait for it.
	c.SetPod(info(pod("early", onNode("n9"))))
	c.UpdateSnapshot(snap)
	if snap.NumNodes() != 0 {
		t.Fatal("a node without its Node object must not be schedulable")
	}
	c.AddNode(node("n9"))
	c.UpdateSnapshot(snap)
	if snap.NumNodes() != 1 || len(snap.Get("n9").Pods) != 1 {
		t.Fatal("the node arrived: its pods count")
	}
}

func TestSnapshotZonesInterleaved(t *testing.T) {
	snap := NewSnapshot(
		nodeInfo(node("a1", nodeLabels(corev1.LabelTopologyZone, "a"))),
		nodeInfo(node("a2", nodeLabels(corev1.LabelTopologyZone, "a"))),
		nodeInfo(node("b1", nodeLabels(corev1.LabelTopologyZone, "b"))),
		nodeInfo(node("b2", nodeLabels(corev1.LabelTopologyZone, "b"))),
	)
	var names []string
	for _, n := range snap.NodeInfoList {
		names = append(names, n.Name())
	}
	expectEqual(t, "order", names, []string{"a1", "b1", "a2", "b2"})
}
