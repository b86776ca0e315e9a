package garbagecollector_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/garbagecollector"
)

// TestForegroundDeletionOfACycle: pods that own each other in a cycle with
// blocking references are all deleted when one is deleted in the
// foreground (the conformance test "should not be blocked by dependency
// circle"); before, each waited for the next with foregroundDeletion.
func TestForegroundDeletionOfACycle(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1")
	gc := garbagecollector.New(e.CC)
	e.Start(func(ctx context.Context) { gc.Run(ctx, 4) })

	pods := e.Client.CoreV1().Pods("default")
	ref := func(p *corev1.Pod) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: p.Name, UID: p.UID, BlockOwnerDeletion: ptr(true)}
	}
	create := func(name string, owner *corev1.Pod) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img"}}}}
		if owner != nil {
			p.OwnerReferences = []metav1.OwnerReference{ref(owner)}
		}
		out, err := pods.Create(e.Ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	p1 := create("pod1", nil)
	p2 := create("pod2", p1)
	p3 := create("pod3", p2)
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": []metav1.OwnerReference{ref(p3)}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Patch(e.Ctx, "pod1", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	fg := metav1.DeletePropagationForeground
	if err := pods.Delete(e.Ctx, "pod1", metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(30*time.Second, "the cycle deleted", func() error {
		l, err := pods.List(e.Ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(l.Items) != 0 {
			var left []string
			for _, p := range l.Items {
				left = append(left, p.Name+fmtFinalizers(p.Finalizers))
			}
			return controllertest.Errorf("pods left: %v", left)
		}
		return nil
	})
}

func fmtFinalizers(f []string) string {
	b, _ := json.Marshal(f)
	return string(b)
}
