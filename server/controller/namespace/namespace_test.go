package namespace_test

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
	"github.com/skiff-io/skiff/server/controller/namespace"
	"github.com/skiff-io/skiff/server/controller/replicaset"
	"github.com/skiff-io/skiff/server/controller/serviceaccount"
)

func TestNamespaceDeletionEmptiesIt(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1")
	ns := namespace.New(e.CC)
	sa := serviceaccount.New(e.CC)
	rs := replicaset.NewReplicaSet(e.CC)
	gc := garbagecollector.New(e.CC)
	e.Start(func(ctx context.Context) { ns.Run(ctx, 1) }, func(ctx context.Context) { sa.Run(ctx, 1) },
		func(ctx context.Context) { rs.Run(ctx, 1) }, func(ctx context.Context) { gc.Run(ctx, 2) })

	e.Namespace("doomed")
	e.WaitFor(10*time.Second, "default service account", func() error {
		_, err := e.Client.CoreV1().ServiceAccounts("doomed").Get(e.Ctx, "default", metav1.GetOptions{})
		return err
	})
	two := int32(2)
	if _, err := e.Client.AppsV1().ReplicaSets("doomed").Create(e.Ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "rs"},
		Spec: appsv1.ReplicaSetSpec{Replicas: &two, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.CoreV1().ConfigMaps("doomed").Create(e.Ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "pods", func() error {
		l, _ := e.Client.CoreV1().Pods("doomed").List(e.Ctx, metav1.ListOptions{})
		if len(l.Items) != 2 {
			return controllertest.Errorf("%d pods", len(l.Items))
		}
		return nil
	})
	if err := e.Client.CoreV1().Namespaces().Delete(e.Ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(20*time.Second, "namespace gone", func() error {
		n, err := e.Client.CoreV1().Namespaces().Get(e.Ctx, "doomed", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return controllertest.Errorf("namespace: %v %+v", err, n.Status)
		}
		return nil
	})
	for _, list := range []func() (int, error){
		func() (int, error) {
			l, err := e.Client.CoreV1().Pods("doomed").List(e.Ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := e.Client.CoreV1().ConfigMaps("doomed").List(e.Ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := e.Client.AppsV1().ReplicaSets("doomed").List(e.Ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := e.Client.CoreV1().ServiceAccounts("doomed").List(e.Ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
	} {
		if n, err := list(); err != nil || n != 0 {
			t.Fatalf("left in the deleted namespace: %d (%v)", n, err)
		}
	}
}

// TestOrderedNamespaceDeletion follows the upstream conformance test
// "OrderedNamespaceDeletion namespace deletion should delete pod first"
// (Kubernetes 1.34): while a pod (held by a finalizer) remains, the
// namespace is Terminating with a NamespaceDeletionContentFailure
// condition and its other content stays; once the pod goes, the rest is
// deleted and the namespace with it.
func TestOrderedNamespaceDeletion(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1")
	ns := namespace.New(e.CC)
	sa := serviceaccount.New(e.CC)
	e.Start(func(ctx context.Context) { ns.Run(ctx, 1) }, func(ctx context.Context) { sa.Run(ctx, 1) })
	e.Namespace("nsdeletetest")
	e.WaitFor(10*time.Second, "default service account", func() error {
		_, err := e.Client.CoreV1().ServiceAccounts("nsdeletetest").Get(e.Ctx, "default", metav1.GetOptions{})
		return err
	})
	pods := e.Client.CoreV1().Pods("nsdeletetest")
	if _, err := pods.Create(e.Ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "test-pod", Finalizers: []string{"e2e.example.com/finalizer"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cms := e.Client.CoreV1().ConfigMaps("nsdeletetest")
	if _, err := cms.Create(e.Ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "test-configmap"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.CoreV1().Namespaces().Delete(e.Ctx, "nsdeletetest", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(20*time.Second, "Terminating with a NamespaceDeletionContentFailure condition, the pod being deleted", func() error {
		n, err := e.Client.CoreV1().Namespaces().Get(e.Ctx, "nsdeletetest", metav1.GetOptions{})
		if err != nil {
			return err
		}
		found := false
		for _, c := range n.Status.Conditions {
			found = found || c.Type == corev1.NamespaceDeletionContentFailure
		}
		if n.Status.Phase != corev1.NamespaceTerminating || !found {
			return controllertest.Errorf("phase %s, conditions %+v", n.Status.Phase, n.Status.Conditions)
		}
		p, err := pods.Get(e.Ctx, "test-pod", metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp == nil {
			return controllertest.Errorf("pod: %v", err)
		}
		return nil
	})
	// The configmap stays while the pod does (the controller keeps
	// looking every 2 s).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := cms.Get(e.Ctx, "test-configmap", metav1.GetOptions{}); err != nil {
			t.Fatalf("the configmap went before the pod: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	p, err := pods.Get(e.Ctx, "test-pod", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Finalizers = nil
	if _, err := pods.Update(e.Ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(30*time.Second, "namespace gone", func() error {
		n, err := e.Client.CoreV1().Namespaces().Get(e.Ctx, "nsdeletetest", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return controllertest.Errorf("namespace: %v %+v", err, n.Status)
		}
		return nil
	})
}
