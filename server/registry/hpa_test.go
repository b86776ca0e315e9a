package registry

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/fsm/state"
)

func i32(v int32) *int32 { return &v }

func qp(s string) *resource.Quantity { q := resource.MustParse(s); return &q }

// fullHPA uses every metric type, a behavior and a status.
func fullHPA() *autoscalingv2.HorizontalPodAutoscaler {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"queue": "jobs"}}
	up := autoscalingv2.MaxChangePolicySelect
	now := metav1.NewTime(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Annotations: map[string]string{"team": "a"}},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    i32(2), MaxReplicas: 10,
			Metrics: []autoscalingv2.MetricSpec{
				{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth", Selector: sel},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: qp("30")}}},
				{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "rps"},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qp("100")}}},
				{Type: autoscalingv2.ContainerResourceMetricSourceType, ContainerResource: &autoscalingv2.ContainerResourceMetricSource{
					Name: corev1.ResourceMemory, Container: "app",
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qp("64Mi")}}},
				cpuUtilizationMetric(50),
			},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: &autoscalingv2.HPAScalingRules{
				StabilizationWindowSeconds: i32(0), SelectPolicy: &up,
				Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 2, PeriodSeconds: 30}}}},
		},
		Status: autoscalingv2.HorizontalPodAutoscalerStatus{
			CurrentReplicas: 3, DesiredReplicas: 4, LastScaleTime: &now,
			CurrentMetrics: []autoscalingv2.MetricStatus{
				{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricStatus{
					Metric:  autoscalingv2.MetricIdentifier{Name: "queue_depth", Selector: sel},
					Current: autoscalingv2.MetricValueStatus{Value: qp("42")}}},
				{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricStatus{
					Name: corev1.ResourceCPU, Current: autoscalingv2.MetricValueStatus{AverageUtilization: i32(45), AverageValue: qp("90m")}}},
			},
			Conditions: []autoscalingv2.HorizontalPodAutoscalerCondition{{Type: autoscalingv2.AbleToScale, Status: corev1.ConditionTrue,
				LastTransitionTime: now, Reason: "ReadyForNewScale", Message: "recommended size matches current size"}},
		},
	}
}

// A v2 object read at v1 keeps CPU in v1's fields and the rest in the
// round-trip annotations; written back at v1 it is the same v2 object.
func TestHPAConversionRoundTrip(t *testing.T) {
	in := fullHPA()
	v1, err := HPAToV1(in)
	if err != nil {
		t.Fatal(err)
	}
	if p := v1.Spec.TargetCPUUtilizationPercentage; p == nil || *p != 50 {
		t.Fatalf("targetCPUUtilizationPercentage: %v", p)
	}
	if p := v1.Status.CurrentCPUUtilizationPercentage; p == nil || *p != 45 {
		t.Fatalf("currentCPUUtilizationPercentage: %v", p)
	}
	for _, a := range []string{hpaMetricsAnnotation, hpaCurrentAnnotation, hpaConditionsAnnotation, hpaBehaviorAnnotation} {
		if v1.Annotations[a] == "" {
			t.Fatalf("v1 lacks annotation %s: %v", a, v1.Annotations)
		}
	}
	if !strings.Contains(v1.Annotations[hpaMetricsAnnotation], `"metricName":"queue_depth"`) || strings.Contains(v1.Annotations[hpaMetricsAnnotation], `"cpu"`) {
		t.Fatalf("metrics annotation: %s", v1.Annotations[hpaMetricsAnnotation])
	}
	back := HPAFromV1(v1)
	back.TypeMeta = in.TypeMeta
	if !apiequality.Semantic.DeepEqual(in, back) {
		t.Fatalf("round trip changed the object:\n in: %+v\nout: %+v", in, back)
	}
	if in.Annotations[hpaMetricsAnnotation] != "" || back.Annotations[hpaMetricsAnnotation] != "" {
		t.Fatal("round-trip annotations reached the stored object")
	}

	// A plain v1 object: CPU only, and no annotations on the way back.
	plain := &autoscalingv1.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: autoscalingv1.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "p"},
		MinReplicas:    i32(1), MaxReplicas: 4, TargetCPUUtilizationPercentage: i32(50)}}
	v2 := HPAFromV1(plain)
	if len(v2.Spec.Metrics) != 1 || !isCPUUtilization(v2.Spec.Metrics[0]) || *v2.Spec.Metrics[0].Resource.Target.AverageUtilization != 50 {
		t.Fatalf("v1 CPU target to v2: %+v", v2.Spec.Metrics)
	}
	again, err := HPAToV1(v2)
	if err != nil {
		t.Fatal(err)
	}
	again.TypeMeta = plain.TypeMeta
	if !apiequality.Semantic.DeepEqual(plain, again) {
		t.Fatalf("v1 round trip:\n in: %+v\nout: %+v", plain, again)
	}
	// No target at all: kube-apiserver's 80% default.
	plain.Spec.TargetCPUUtilizationPercentage = nil
	if m := HPAFromV1(plain).Spec.Metrics; len(m) != 1 || *m[0].Resource.Target.AverageUtilization != 80 {
		t.Fatalf("default metric: %+v", m)
	}
}

// Both versions read and write the same stored object.
func TestHPAStoredOnce(t *testing.T) {
	r := New()
	k2, ok2 := r.Lookup("autoscaling", "v2", "horizontalpodautoscalers")
	k1, ok1 := r.Lookup("autoscaling", "v1", "horizontalpodautoscalers")
	if !ok1 || !ok2 {
		t.Fatal("HorizontalPodAutoscaler not served at v1 and v2")
	}
	if k, _ := r.ByStorageResource("autoscaling/horizontalpodautoscalers"); k != k2 {
		t.Fatal("the store is read by the v2 kind")
	}
	data, err := k2.Encode(fullHPA())
	if err != nil {
		t.Fatal(err)
	}
	obj, err := k1.Decode(&state.Object{Key: k1.Key("default", "web"), Data: data, ModifyIndex: 7})
	if err != nil {
		t.Fatal(err)
	}
	v1 := obj.(*autoscalingv1.HorizontalPodAutoscaler)
	if v1.APIVersion != "autoscaling/v1" || v1.ResourceVersion != "7" || *v1.Spec.TargetCPUUtilizationPercentage != 50 {
		t.Fatalf("v1 decode: %+v", v1)
	}
	data1, err := k1.Encode(v1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data1), `"apiVersion":"autoscaling/v2"`) || strings.Contains(string(data1), "autoscaling.alpha") {
		t.Fatalf("v1 encode stores: %s", data1)
	}
	obj, err = k2.Decode(&state.Object{Key: k2.Key("default", "web"), Data: data1, ModifyIndex: 8})
	if err != nil {
		t.Fatal(err)
	}
	want := fullHPA()
	got := obj.(*autoscalingv2.HorizontalPodAutoscaler)
	got.TypeMeta, got.ResourceVersion = want.TypeMeta, ""
	if !apiequality.Semantic.DeepEqual(want, got) {
		t.Fatalf("v2 -> v1 -> store -> v2 changed:\n%+v\n%+v", want, got)
	}
}

func TestHPADefaults(t *testing.T) {
	h := &autoscalingv2.HorizontalPodAutoscaler{Spec: autoscalingv2.HorizontalPodAutoscalerSpec{MaxReplicas: 3,
		Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32(60)}}}}
	DefaultHPA(h)
	if *h.Spec.MinReplicas != 1 || len(h.Spec.Metrics) != 1 || *h.Spec.Metrics[0].Resource.Target.AverageUtilization != 80 {
		t.Fatalf("defaults: %+v", h.Spec)
	}
	b := h.Spec.Behavior
	if *b.ScaleDown.StabilizationWindowSeconds != 60 || len(b.ScaleDown.Policies) != 1 || b.ScaleDown.Policies[0].Value != 100 ||
		*b.ScaleDown.SelectPolicy != autoscalingv2.MaxChangePolicySelect {
		t.Fatalf("scaleDown: %+v", b.ScaleDown)
	}
	if *b.ScaleUp.StabilizationWindowSeconds != 0 || len(b.ScaleUp.Policies) != 2 || b.ScaleUp.Policies[0].Value != 4 || b.ScaleUp.Policies[1].Value != 100 {
		t.Fatalf("scaleUp: %+v", b.ScaleUp)
	}
}

func TestHPAValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*autoscalingv2.HorizontalPodAutoscalerSpec)
		want   []string
	}{
		{"valid", func(*autoscalingv2.HorizontalPodAutoscalerSpec) {}, nil},
		{"max 0", func(s *autoscalingv2.HorizontalPodAutoscalerSpec) { s.MaxReplicas = 0 },
			[]string{"spec.maxReplicas", "spec.maxReplicas"}}, // > 0 and >= minReplicas
		{"min above max", func(s *autoscalingv2.HorizontalPodAutoscalerSpec) { s.MinReplicas = i32(20) }, []string{"spec.maxReplicas"}},
		{"min 0", func(s *autoscalingv2.HorizontalPodAutoscalerSpec) { s.MinReplicas = i32(0) }, []string{"spec.minReplicas"}},
		{"no group", func(s *autoscalingv2.HorizontalPodAutoscalerSpec) { s.ScaleTargetRef.APIVersion = "v1" },
			[]string{"spec.scaleTargetRef.apiVersion"}},
		{"no name", func(s *autoscalingv2.HorizontalPodAutoscalerSpec) { s.ScaleTargetRef.Name = "" }, []string{"spec.scaleTargetRef.name"}},
		{"utilization 0", func(s *autoscalingv2.HorizontalPodAutoscalerSpec) {
			s.Metrics[3].Resource.Target.AverageUtilization = i32(0)
		},
			[]string{"spec.metrics[3].resource.target.averageUtilization"}},
		{"two sources", func(s *autoscalingv2.HorizontalPodAutoscalerSpec) { s.Metrics[1].Resource = s.Metrics[3].Resource },
			[]string{"spec.metrics[1].resource"}},
		{"bad type", func(s *autoscalingv2.HorizontalPodAutoscalerSpec) { s.Metrics[0].Type = "Nope" }, []string{"spec.metrics[0].type"}},
		{"external both", func(s *autoscalingv2.HorizontalPodAutoscalerSpec) {
			s.Metrics[0].External.Target.AverageValue = qp("1")
		},
			[]string{"spec.metrics[0].external.target.value"}},
		{"policy", func(s *autoscalingv2.HorizontalPodAutoscalerSpec) {
			s.Behavior.ScaleUp.Policies[0].PeriodSeconds = 1801
			s.Behavior.ScaleUp.Policies = append(s.Behavior.ScaleUp.Policies, autoscalingv2.HPAScalingPolicy{Type: "Nodes", Value: 0, PeriodSeconds: 1})
		}, []string{"spec.behavior.scaleUp.policies[0].periodSeconds", "spec.behavior.scaleUp.policies[1].type", "spec.behavior.scaleUp.policies[1].value"}},
		{"window", func(s *autoscalingv2.HorizontalPodAutoscalerSpec) {
			s.Behavior.ScaleUp.StabilizationWindowSeconds = i32(3601)
		},
			[]string{"spec.behavior.scaleUp.stabilizationWindowSeconds"}},
		{"no policies", func(s *autoscalingv2.HorizontalPodAutoscalerSpec) { s.Behavior.ScaleUp.Policies = nil },
			[]string{"spec.behavior.scaleUp.policies"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := fullHPA()
			tc.change(&h.Spec)
			var got []string
			for _, e := range ValidateHPASpec(&h.Spec) {
				got = append(got, e.Field)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("errors at %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHPATargetsColumn(t *testing.T) {
	h := fullHPA()
	if got := HPATargets(h.Spec.Metrics, nil); got != "<unknown>/30, <unknown>/100 + 2 more..." {
		t.Fatalf("targets: %q", got)
	}
	cpu := []autoscalingv2.MetricSpec{cpuUtilizationMetric(50)}
	if got := HPATargets(cpu, nil); got != "cpu: <unknown>/50%" {
		t.Fatalf("targets: %q", got)
	}
	st := []autoscalingv2.MetricStatus{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricStatus{
		Name: corev1.ResourceCPU, Current: autoscalingv2.MetricValueStatus{AverageUtilization: i32(45)}}}}
	if got := HPATargets(cpu, st); got != "cpu: 45%/50%" {
		t.Fatalf("targets: %q", got)
	}
	k := hpaKind(new(atomic.Bool))
	k.init()
	cells := k.Cells(h, h.CreationTimestamp.Add(time.Minute))
	if len(cells) != len(k.Columns()) || cells[1] != "Deployment/web" || cells[3] != "2" || cells[4] != int64(10) || cells[5] != int64(3) {
		t.Fatalf("cells: %v", cells)
	}
}
