package garbagecollector_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/garbagecollector"
	"github.com/skiff-io/skiff/server/controller/replicaset"
)

func ptr[T any](v T) *T { return &v }

func newRS(name string) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img"}}}}},
	}
}

func TestCascadingDeletion(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1")
	rs := replicaset.NewReplicaSet(e.CC)
	gc := garbagecollector.New(e.CC)
	e.Start(func(ctx context.Context) { rs.Run(ctx, 2) }, func(ctx context.Context) { gc.Run(ctx, 4) })

	pods := func(app string) []corev1.Pod {
		l, err := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	for _, name := range []string{"bg", "fg", "orphan"} {
		if _, err := e.Client.AppsV1().ReplicaSets("default").Create(e.Ctx, newRS(name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.WaitFor(10*time.Second, name+" pods", func() error {
			if n := len(pods(name)); n != 2 {
				return controllertest.Errorf("%d pods", n)
			}
			return nil
		})
	}
	del := func(name string, p metav1.DeletionPropagation) {
		if err := e.Client.AppsV1().ReplicaSets("default").Delete(e.Ctx, name, metav1.DeleteOptions{PropagationPolicy: &p}); err != nil {
			t.Fatal(err)
		}
	}
	gone := func(name string) error {
		_, err := e.Client.AppsV1().ReplicaSets("default").Get(e.Ctx, name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return controllertest.Errorf("replica set %s still there (%v)", name, err)
		}
		return nil
	}

	// Background: the owner goes at once, then its pods.
	del("bg", metav1.DeletePropagationBackground)
	if err := gone("bg"); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "background dependents deleted", func() error {
		if n := len(pods("bg")); n != 0 {
			return controllertest.Errorf("%d pods left", n)
		}
		return nil
	})

	// Foreground: the owner stays (foregroundDeletion) until its pods are
	// gone.
	del("fg", metav1.DeletePropagationForeground)
	owner, err := e.Client.AppsV1().ReplicaSets("default").Get(e.Ctx, "fg", metav1.GetOptions{})
	if err != nil || owner.DeletionTimestamp == nil || owner.Finalizers[0] != metav1.FinalizerDeleteDependents {
		t.Fatalf("foreground owner: %v %+v", err, owner.ObjectMeta)
	}
	e.WaitFor(10*time.Second, "foreground deletion", func() error {
		if n := len(pods("fg")); n != 0 {
			return controllertest.Errorf("%d pods left", n)
		}
		return gone("fg")
	})

	// Orphan: the owner goes, the pods stay without the reference.
	del("orphan", metav1.DeletePropagationOrphan)
	e.WaitFor(10*time.Second, "orphaning", func() error {
		if err := gone("orphan"); err != nil {
			return err
		}
		ps := pods("orphan")
		if len(ps) != 2 {
			return controllertest.Errorf("%d pods", len(ps))
		}
		for _, p := range ps {
			if len(p.OwnerReferences) != 0 {
				return controllertest.Errorf("pod %s still owned: %+v", p.Name, p.OwnerReferences)
			}
		}
		return nil
	})

	// A dependent whose owner never existed is collected too.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dangling", Namespace: "default",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "nobody", UID: "00000000-0000-0000-0000-000000000001"}}}}
	if _, err := e.Client.CoreV1().ConfigMaps("default").Create(e.Ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "dangling dependent deleted", func() error {
		_, err := e.Client.CoreV1().ConfigMaps("default").Get(e.Ctx, "dangling", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return controllertest.Errorf("still there: %v", err)
		}
		return nil
	})
}
