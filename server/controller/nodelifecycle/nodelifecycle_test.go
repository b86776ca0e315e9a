package nodelifecycle_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/nodelifecycle"
)

func ptr[T any](v T) *T { return &v }

// heartbeat renews node's Lease every 100 ms while alive is set.
func heartbeat(e *controllertest.Env, node string, alive *atomic.Bool) {
	leases := e.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	for e.Ctx.Err() == nil {
		if alive.Load() {
			now := metav1.NewMicroTime(time.Now())
			l, err := leases.Get(e.Ctx, node, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				_, _ = leases.Create(e.Ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node},
					Spec: coordinationv1.LeaseSpec{HolderIdentity: &node, RenewTime: &now}}, metav1.CreateOptions{})
			} else if err == nil {
				l.Spec.RenewTime = &now
				_, _ = leases.Update(e.Ctx, l, metav1.UpdateOptions{})
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestNodeLifecycle(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.Namespace(corev1.NamespaceNodeLease)
	e.RunKubelet("n1", "n2")
	var alive1, alive2 atomic.Bool
	alive1.Store(true)
	alive2.Store(true)
	go heartbeat(e, "n1", &alive1)
	go heartbeat(e, "n2", &alive2)
	c := nodelifecycle.New(e.CC, nodelifecycle.Options{GracePeriod: time.Second, StartupGracePeriod: time.Second,
		EvictionRate: 100, UnhealthyZoneThreshold: 0.55, LargeClusterSizeThreshold: 50, MonitorPeriod: 100 * time.Millisecond})
	e.Start(func(ctx context.Context) { c.Run(ctx, 2) })

	mk := func(name, node string, secs *int64) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{NodeName: node,
			Containers: []corev1.Container{{Name: "c", Image: "i"}},
			Tolerations: []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists,
				Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs}}}}
		if _, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("short", "n2", ptr(int64(1)))
	mk("forever", "n2", nil)
	mk("safe", "n1", ptr(int64(1)))
	time.Sleep(1500 * time.Millisecond) // both nodes heartbeat: nothing happens
	node := func(name string) *corev1.Node {
		n, err := e.Client.CoreV1().Nodes().Get(e.Ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	readyOf := func(n *corev1.Node) corev1.ConditionStatus {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status
			}
		}
		return ""
	}
	if n := node("n2"); readyOf(n) != corev1.ConditionTrue || len(n.Spec.Taints) != 0 {
		t.Fatalf("healthy node changed: %+v %+v", n.Spec.Taints, n.Status.Conditions)
	}

	// n2 goes silent: Unknown, unreachable taints, the pod tolerating 1 s
	// is evicted, the one tolerating forever stays.
	alive2.Store(false)
	e.WaitFor(10*time.Second, "n2 unreachable", func() error {
		n := node("n2")
		noExec, noSched := false, false
		for _, t := range n.Spec.Taints {
			if t.Key == corev1.TaintNodeUnreachable {
				noExec = noExec || t.Effect == corev1.TaintEffectNoExecute
				noSched = noSched || t.Effect == corev1.TaintEffectNoSchedule
			}
		}
		if readyOf(n) != corev1.ConditionUnknown || !noExec || !noSched {
			return controllertest.Errorf("taints %+v conditions %+v", n.Spec.Taints, n.Status.Conditions)
		}
		return nil
	})
	e.WaitFor(10*time.Second, "eviction after tolerationSeconds", func() error {
		if _, err := e.Client.CoreV1().Pods("default").Get(e.Ctx, "short", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return controllertest.Errorf("short still there: %v", err)
		}
		return nil
	})
	if p, err := e.Client.CoreV1().Pods("default").Get(e.Ctx, "forever", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Fatalf("pod tolerating forever evicted: %v", err)
	}

	// Every node goes dark: full disruption, NoExecute taints lifted, no
	// eviction on n1.
	alive1.Store(false)
	e.WaitFor(10*time.Second, "no NoExecute taints in full disruption", func() error {
		for _, name := range []string{"n1", "n2"} {
			n := node(name)
			if readyOf(n) != corev1.ConditionUnknown {
				return controllertest.Errorf("%s ready %s", name, readyOf(n))
			}
			for _, t := range n.Spec.Taints {
				if t.Effect == corev1.TaintEffectNoExecute {
					return controllertest.Errorf("%s has %+v", name, t)
				}
			}
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // longer than "safe"'s toleration
	if p, err := e.Client.CoreV1().Pods("default").Get(e.Ctx, "safe", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Fatalf("pod evicted during full disruption: %v", err)
	}

	// n1 comes back: Ready again (its kubelet would report it), no taints.
	alive1.Store(true)
	n := node("n1")
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			n.Status.Conditions[i].Status = corev1.ConditionTrue
			n.Status.Conditions[i].LastHeartbeatTime = metav1.Now()
		}
	}
	if _, err := e.Client.CoreV1().Nodes().UpdateStatus(e.Ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "n1 untainted", func() error {
		if n := node("n1"); len(n.Spec.Taints) != 0 || readyOf(n) != corev1.ConditionTrue {
			return controllertest.Errorf("taints %+v", n.Spec.Taints)
		}
		return nil
	})
}
