package deployment_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/deployment"
)

// TestProportionalScaling is the conformance test "deployment should
// support proportional scaling": a rollout stuck on pods that never become
// ready (old set 8, new set 5 of 10 replicas with maxSurge 3 and
// maxUnavailable 2) is scaled to 30; the 20 more pods allowed (30+3-13)
// are shared in proportion to the sets' sizes: old 20, new 13.
func TestProportionalScaling(t *testing.T) {
	e := start(t)
	d := newDeployment("prop", 10, intstr.FromInt32(3), intstr.FromInt32(2))
	if _, err := e.Client.AppsV1().Deployments("default").Create(e.Ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, e, "prop")
	p := []byte(`{"spec":{"template":{"metadata":{"annotations":{"` + controllertest.AnnotationNotReady + `":"true"}},"spec":{"containers":[{"name":"c","image":"v2"}]}}}}`)
	if _, err := e.Client.AppsV1().Deployments("default").Patch(e.Ctx, "prop", types.StrategicMergePatchType, p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	sizes := func() (old, cur int32, err error) {
		l, err := e.Client.AppsV1().ReplicaSets("default").List(e.Ctx, metav1.ListOptions{LabelSelector: "app=prop"})
		if err != nil {
			return 0, 0, err
		}
		for _, rs := range l.Items {
			if rs.Annotations[deployment.RevisionAnnotation] == "1" {
				old = *rs.Spec.Replicas
			} else {
				cur = *rs.Spec.Replicas
			}
		}
		return old, cur, nil
	}
	e.WaitFor(20*time.Second, "the rollout stuck at 8 old and 5 new", func() error {
		old, cur, err := sizes()
		if err != nil || old != 8 || cur != 5 {
			return controllertest.Errorf("old %d new %d (%v)", old, cur, err)
		}
		return nil
	})
	if _, err := e.Client.AppsV1().Deployments("default").Patch(e.Ctx, "prop", types.MergePatchType, []byte(`{"spec":{"replicas":30}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(20*time.Second, "old 20 and new 13 replicas", func() error {
		old, cur, err := sizes()
		if err != nil || old != 20 || cur != 13 {
			return controllertest.Errorf("old %d new %d (%v)", old, cur, err)
		}
		return nil
	})
	l, err := e.Client.AppsV1().ReplicaSets("default").List(e.Ctx, metav1.ListOptions{LabelSelector: "app=prop"})
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range l.Items {
		if rs.Annotations[deployment.DesiredReplicasAnnotation] != "30" || rs.Annotations[deployment.MaxReplicasAnnotation] != "33" {
			t.Fatalf("replica set %s annotations %v", rs.Name, rs.Annotations)
		}
	}
}
