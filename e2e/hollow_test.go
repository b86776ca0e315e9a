package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestHollowNodes runs three hollow nodes in one process: each has its own
// Node and Lease, and pod annotations script the fake containers.
func TestHollowNodes(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "hollow"})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	h := testutil.NewHollowNodes(t, testutil.HollowOptions{Count: 3, Server: m.URL(), Kubeconfig: m.Kubeconfig()})
	h.Start()
	h.WaitReady(cs, 60*time.Second)
	ctx := context.Background()
	for i := 0; i < h.Count; i++ {
		if _, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, h.NodeName(i), metav1.GetOptions{}); err != nil {
			t.Errorf("lease of %s: %v", h.NodeName(i), err)
		}
	}
	mk := func(name string, ann map[string]string) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: ann},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "c", Image: "example.com/app:1"}}},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("forever", nil)
	mk("short", map[string]string{"fake.skiff.io/run-for": "2s"})
	mk("crash", map[string]string{"fake.skiff.io/exit-code": "1"})
	mk("broken", map[string]string{"fake.skiff.io/fail-start": "true"})

	running := waitPodPhase(t, cs, "default", "forever", corev1.PodRunning)
	if running.Spec.NodeName == "" || running.Status.PodIP == "" {
		t.Errorf("forever: node %q IP %q", running.Spec.NodeName, running.Status.PodIP)
	}
	start := time.Now()
	waitPodPhase(t, cs, "default", "short", corev1.PodRunning)
	short := waitPodPhase(t, cs, "default", "short", corev1.PodSucceeded)
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("short ran %s", took)
	}
	if cs := short.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].State.Terminated.ExitCode != 0 {
		t.Errorf("short: %+v", cs)
	}
	crash := waitPodPhase(t, cs, "default", "crash", corev1.PodFailed)
	if cs := crash.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].State.Terminated.ExitCode != 1 {
		t.Errorf("crash: %+v", cs)
	}
	testutil.WaitFor(t, 60*time.Second, "broken pod's container failing to start", func() error {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "broken", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range p.Status.ContainerStatuses {
			if t := c.State.Terminated; t != nil && t.Reason == "StartError" {
				return nil
			}
			if w := c.State.Waiting; w != nil && (w.Reason == "RunContainerError" || w.Reason == "CrashLoopBackOff" || w.Reason == "StartError") {
				return nil
			}
		}
		return fmt.Errorf("phase %s, statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
	})
}
