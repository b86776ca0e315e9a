package statefulset_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/statefulset"
)

// TestOrderedScaleDownHaltsOnUnhealthyPod is the scale-down half of the
// conformance test "Scaling should happen in predictable order and halt if
// any stateful pod is unhealthy": with every pod unready, scaling to 0
// deletes nothing; once they are ready again the pods go from the highest
// ordinal down, one at a time.
func TestOrderedScaleDownHaltsOnUnhealthyPod(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1")
	c := statefulset.New(e.CC)
	e.Start(func(ctx context.Context) { c.Run(ctx, 2) })
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr(int32(3)), ServiceName: "web",
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "v1"}}}},
		},
	}
	if _, err := e.Client.AppsV1().StatefulSets("default").Create(e.Ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := e.Client.CoreV1().Pods("default")
	e.WaitFor(20*time.Second, "3 ready pods", func() error {
		s, err := e.Client.AppsV1().StatefulSets("default").Get(e.Ctx, "web", metav1.GetOptions{})
		if err != nil || s.Status.ReadyReplicas != 3 {
			return controllertest.Errorf("status %+v (%v)", s.Status, err)
		}
		return nil
	})
	setReady := func(ready corev1.ConditionStatus) {
		t.Helper()
		for _, name := range []string{"web-0", "web-1", "web-2"} {
			// The fake kubelet and the controller write the pods too:
			// retry on a conflict.
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				p, err := pods.Get(e.Ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				for i := range p.Status.Conditions {
					if p.Status.Conditions[i].Type == corev1.PodReady {
						p.Status.Conditions[i].Status = ready
					}
				}
				_, err = pods.UpdateStatus(e.Ctx, p, metav1.UpdateOptions{})
				return err
			})
			if apierrors.IsNotFound(err) && ready == corev1.ConditionTrue {
				// Scaling down: once the others are ready, the
				// condemned pod may go before it is made ready.
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	setReady(corev1.ConditionFalse)
	e.WaitFor(10*time.Second, "no ready pod", func() error {
		s, err := e.Client.AppsV1().StatefulSets("default").Get(e.Ctx, "web", metav1.GetOptions{})
		if err != nil || s.Status.ReadyReplicas != 0 {
			return controllertest.Errorf("status %+v (%v)", s.Status, err)
		}
		return nil
	})
	deleted := make(chan string, 10)
	w, err := pods.Watch(e.Ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	go func() {
		seen := map[string]bool{}
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && p.DeletionTimestamp != nil && !seen[p.Name] {
				seen[p.Name] = true
				deleted <- p.Name
			}
		}
	}()
	if _, err := e.Client.AppsV1().StatefulSets("default").Patch(e.Ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	// Nothing may be deleted while the pods are unhealthy: give the
	// controller two seconds to get it wrong.
	select {
	case name := <-deleted:
		t.Fatalf("pod %s deleted while the pods are unhealthy", name)
	case <-time.After(2 * time.Second):
	}
	setReady(corev1.ConditionTrue)
	var order []string
	for len(order) < 3 {
		select {
		case name := <-deleted:
			order = append(order, name)
		case <-time.After(20 * time.Second):
			t.Fatalf("deleted so far: %v", order)
		}
	}
	if order[0] != "web-2" || order[1] != "web-1" || order[2] != "web-0" {
		t.Fatalf("deletion order %v, want web-2, web-1, web-0", order)
	}
}
