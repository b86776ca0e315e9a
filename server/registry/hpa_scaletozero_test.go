package registry

import (
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// minReplicas 0 follows kube-apiserver's HPAScaleToZero gate: refused
// while the gate is off (the default), allowed with it when a metric is
// an Object or External one, forbidden with only pod metrics; in v2 and
// in v1 (whose only metric is CPU, so never allowed).
func TestHPAScaleToZeroGate(t *testing.T) {
	external := func() *autoscalingv2.HorizontalPodAutoscaler {
		h := fullHPA()
		h.Spec.MinReplicas = i32(0)
		return h
	}
	podsOnly := func() *autoscalingv2.HorizontalPodAutoscaler {
		h := external()
		h.Spec.Metrics = h.Spec.Metrics[1:]
		return h
	}
	v1 := &autoscalingv1.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: autoscalingv1.HorizontalPodAutoscalerSpec{MinReplicas: i32(0), MaxReplicas: 3,
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}}}
	fields := func(errs field.ErrorList) map[string]field.ErrorType {
		m := map[string]field.ErrorType{}
		for _, e := range errs {
			m[e.Field] = e.Type
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		gate    bool
		version string
		obj     runtime.Object
		want    map[string]field.ErrorType
	}{
		{"gate off", false, "v2", external(), map[string]field.ErrorType{"spec.minReplicas": field.ErrorTypeInvalid}},
		{"gate on, external metric", true, "v2", external(), map[string]field.ErrorType{}},
		{"gate on, pod metrics only", true, "v2", podsOnly(), map[string]field.ErrorType{"spec.metrics": field.ErrorTypeForbidden}},
		{"gate off, v1", false, "v1", v1, map[string]field.ErrorType{"spec.minReplicas": field.ErrorTypeInvalid}},
		{"gate on, v1 (CPU only)", true, "v1", v1, map[string]field.ErrorType{"spec.metrics": field.ErrorTypeForbidden}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			r.SetHPAScaleToZero(tc.gate)
			k, ok := r.Lookup("autoscaling", tc.version, "horizontalpodautoscalers")
			if !ok {
				t.Fatal("no HPA kind")
			}
			got := fields(k.Validate(tc.obj))
			if len(got) != len(tc.want) {
				t.Fatalf("errors %v, want %v", got, tc.want)
			}
			for f, typ := range tc.want {
				if got[f] != typ {
					t.Fatalf("errors %v, want %v", got, tc.want)
				}
			}
		})
	}
}
