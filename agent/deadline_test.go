package agent

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestActiveDeadlineLoweredOnRunningPod: as the kubelet (conformance
// "should be updated" / activeDeadlineSeconds), a running pod whose
// spec.activeDeadlineSeconds is set by an update is killed once it has run
// that long: phase Failed, reason DeadlineExceeded, a Warning event, its
// container stopped.
func TestActiveDeadlineLoweredOnRunningPod(t *testing.T) {
	h := newHarness(t)
	h.createPod(pod("deadline", corev1.RestartPolicyNever, ctr("main", "sleep")))
	h.waitPod("deadline", "running", phaseIs(corev1.PodRunning))
	patch := []byte(`{"spec":{"activeDeadlineSeconds":1}}`)
	if _, err := h.cs.CoreV1().Pods("default").Patch(context.Background(), "deadline", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	got := h.waitPod("deadline", "failed past its deadline", func(p *corev1.Pod) error {
		if p.Status.Phase != corev1.PodFailed || p.Status.Reason != reasonDeadlineExceeded {
			return fmt.Errorf("phase %s reason %q", p.Status.Phase, p.Status.Reason)
		}
		return nil
	})
	if got.Status.Message != messageDeadlineExceeded {
		t.Errorf("message %q", got.Status.Message)
	}
	h.waitEvent("deadline", reasonDeadlineExceeded)
	h.waitPod("deadline", "container stopped", func(p *corev1.Pod) error {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Terminated == nil {
				return fmt.Errorf("container %s: %+v", cs.Name, cs.State)
			}
		}
		return nil
	})
}
