package podgc_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/podgc"
)

// TestOrphanedPodMarkedFailed: a pod of a node that no longer exists is
// put into the Failed phase with the DisruptionTarget condition (reason
// DeletionByPodGC) before it is deleted, as Kubernetes' pod GC, so that a
// pod held by a finalizer (a Job's tracking finalizer) is seen to fail.
func TestOrphanedPodMarkedFailed(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	k := e.RunKubelet("n1")
	c := podgc.New(e.CC, podgc.Options{TerminatedThreshold: 100, Period: 100 * time.Millisecond, Quarantine: 200 * time.Millisecond})
	e.Start(c.Run)
	if err := k.AddNode(e.Ctx, "doomed", nil); err != nil {
		t.Fatal(err)
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "held", Finalizers: []string{"example.com/hold"}},
		Spec: corev1.PodSpec{NodeName: "doomed", Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
	if _, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "the pod running", func() error {
		got, err := e.Client.CoreV1().Pods("default").Get(e.Ctx, "held", metav1.GetOptions{})
		if err != nil || got.Status.Phase != corev1.PodRunning {
			return controllertest.Errorf("pod %v (%v)", got.Status.Phase, err)
		}
		return nil
	})
	if err := e.Client.CoreV1().Nodes().Delete(e.Ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "the orphaned pod failed and deleted", func() error {
		got, err := e.Client.CoreV1().Pods("default").Get(e.Ctx, "held", metav1.GetOptions{})
		if err != nil {
			return err
		}
		var cond *corev1.PodCondition
		for i := range got.Status.Conditions {
			if got.Status.Conditions[i].Type == corev1.DisruptionTarget {
				cond = &got.Status.Conditions[i]
			}
		}
		if got.DeletionTimestamp == nil || got.Status.Phase != corev1.PodFailed || cond == nil || cond.Reason != "DeletionByPodGC" {
			return controllertest.Errorf("deletion %v phase %s conditions %+v", got.DeletionTimestamp, got.Status.Phase, got.Status.Conditions)
		}
		// The other conditions are kept.
		for _, c := range got.Status.Conditions {
			if c.Type == corev1.PodScheduled {
				return nil
			}
		}
		return controllertest.Errorf("conditions %+v", got.Status.Conditions)
	})
	_, err := e.Client.CoreV1().Pods("default").Patch(e.Ctx, "held", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
}
