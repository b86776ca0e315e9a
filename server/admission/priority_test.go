package admission_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/controllertest"
)

func TestPriority(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	pcs := e.Client.SchedulingV1().PriorityClasses()
	never := corev1.PreemptNever
	for _, pc := range []*schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 1000, PreemptionPolicy: &never},
		{ObjectMeta: metav1.ObjectMeta{Name: "normal"}, Value: 10, GlobalDefault: true},
	} {
		if _, err := pcs.Create(e.Ctx, pc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pods := e.Client.CoreV1().Pods("default")
	named := pod("named", "")
	named.Spec.PriorityClassName = "high"
	p, err := pods.Create(e.Ctx, named, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.Priority == nil || *p.Spec.Priority != 1000 || p.Spec.PreemptionPolicy == nil || *p.Spec.PreemptionPolicy != never {
		t.Fatalf("named: priority %v policy %v", p.Spec.Priority, p.Spec.PreemptionPolicy)
	}
	p, err = pods.Create(e.Ctx, pod("plain", ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.Priority == nil || *p.Spec.Priority != 10 || p.Spec.PriorityClassName != "normal" {
		t.Fatalf("default class: priority %v class %q", p.Spec.Priority, p.Spec.PriorityClassName)
	}
	missing := pod("missing", "")
	missing.Spec.PriorityClassName = "nope"
	if _, err := pods.Create(e.Ctx, missing, metav1.CreateOptions{}); !apierrors.IsForbidden(err) ||
		!strings.Contains(err.Error(), "no PriorityClass with name nope was found") {
		t.Fatalf("unknown class: %v", err)
	}
	wrong := pod("wrong", "")
	wrong.Spec.PriorityClassName = "high"
	five := int32(5)
	wrong.Spec.Priority = &five
	if _, err := pods.Create(e.Ctx, wrong, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("mismatched priority: %v", err)
	}
}
