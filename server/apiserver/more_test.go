package apiserver_test

import (
	"fmt"
	"sync"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

func TestUnconditionalUpdatesRetryOnConflict(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cms := e.cs.CoreV1().ConfigMaps("default")
	if _, err := cms.Create(e.ctx, configMap("hot", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := cms.Update(e.ctx, configMap("hot", map[string]string{"writer": fmt.Sprint(i)}), metav1.UpdateOptions{})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("unconditional update: %v", err)
		}
	}
}

func TestCreateOnUpdateAndDeleteCollection(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	holder := "me"
	secs := int32(10)
	lease, err := e.cs.CoordinationV1().Leases("default").Update(e.ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs},
	}, metav1.UpdateOptions{})
	if err != nil || lease.UID == "" {
		t.Fatalf("lease PUT-create: %v %+v", err, lease)
	}
	// Configmaps do not create on update.
	_, err = e.cs.CoreV1().ConfigMaps("default").Update(e.ctx, configMap("absent", nil), metav1.UpdateOptions{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("configmap PUT of a missing object: %v", err)
	}

	for i := 0; i < 4; i++ {
		cm := configMap(fmt.Sprintf("c%d", i), nil)
		cm.Labels = map[string]string{"drop": fmt.Sprint(i%2 == 0)}
		if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	err = e.cs.CoreV1().ConfigMaps("default").DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "drop=true"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.cs.CoreV1().ConfigMaps("default").List(e.ctx, metav1.ListOptions{})
	if err != nil || len(l.Items) != 2 || l.Items[0].Name != "c1" || l.Items[1].Name != "c3" {
		t.Fatalf("after deletecollection: %v %+v", err, l.Items)
	}
}

func TestPodGracefulDeletion(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	pods := e.cs.CoreV1().Pods("default")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := pods.Create(e.ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(e.ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := pods.Get(e.ctx, "p", metav1.GetOptions{})
	if err != nil || got.DeletionTimestamp == nil || got.DeletionGracePeriodSeconds == nil || *got.DeletionGracePeriodSeconds != 30 {
		t.Fatalf("graceful delete: %v %+v", err, got)
	}
	// The kubelet's final delete with grace 0 removes it.
	zero := int64(0)
	if err := pods.Delete(e.ctx, "p", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(e.ctx, "p", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after grace 0: %v", err)
	}
}
