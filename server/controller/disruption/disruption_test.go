package disruption_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/disruption"
	"github.com/skiff-io/skiff/server/controller/replicaset"
)

func TestDisruptionBudget(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1")
	rs := replicaset.NewReplicaSet(e.CC)
	d := disruption.New(e.CC)
	e.Start(func(ctx context.Context) { rs.Run(ctx, 1) }, func(ctx context.Context) { d.Run(ctx, 1) })
	three := int32(3)
	if _, err := e.Client.AppsV1().ReplicaSets("default").Create(e.Ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "rs"},
		Spec: appsv1.ReplicaSetSpec{Replicas: &three, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]policyv1.PodDisruptionBudgetSpec{
		"min": {MinAvailable: &intstr.IntOrString{Type: intstr.Int, IntVal: 2}, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}},
	} {
		if _, err := e.Client.PolicyV1().PodDisruptionBudgets("default").Create(e.Ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.WaitFor(10*time.Second, "budget status", func() error {
		p, err := e.Client.PolicyV1().PodDisruptionBudgets("default").Get(e.Ctx, "min", metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := p.Status
		if st.CurrentHealthy != 3 || st.DesiredHealthy != 2 || st.ExpectedPods != 3 || st.DisruptionsAllowed != 1 || st.ObservedGeneration != p.Generation {
			return controllertest.Errorf("status %+v", st)
		}
		return nil
	})
	pods, _ := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{})
	evict := func(name string) error {
		return e.Client.PolicyV1().Evictions("default").Evict(e.Ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}})
	}
	if err := evict(pods.Items[0].Name); err != nil {
		t.Fatalf("first eviction: %v", err)
	}
	if err := evict(pods.Items[1].Name); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("second eviction: want 429, got %v", err)
	}
	// The replacement becomes ready: one disruption is allowed again.
	e.WaitFor(10*time.Second, "budget restored", func() error {
		p, _ := e.Client.PolicyV1().PodDisruptionBudgets("default").Get(e.Ctx, "min", metav1.GetOptions{})
		if p.Status.DisruptionsAllowed != 1 {
			return controllertest.Errorf("status %+v", p.Status)
		}
		return nil
	})
}
