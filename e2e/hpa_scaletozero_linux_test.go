package e2e

import (
	"context"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// With --feature-gates HPAScaleToZero=true an HPA with minReplicas 0 and
// an External metric (a rule of skiff-system/metrics-rules) scales its
// Deployment to zero while the metric is 0 and back up (⌈value/target⌉)
// when it rises; minReplicas 0 with only a CPU metric is refused (422).
func TestHPAScaleToZero(t *testing.T) {
	n := startRealNodeWith(t, []string{"--metrics-scrape-interval", "1s", "--horizontal-pod-autoscaler-sync-period", "2s",
		"--feature-gates", "HPAScaleToZero=true"}, "--stats-interval", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		bg := context.Background()
		_ = n.cs.AutoscalingV2().HorizontalPodAutoscalers("default").DeleteCollection(bg, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = n.cs.AppsV1().Deployments("default").DeleteCollection(bg, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = n.cs.AppsV1().ReplicaSets("default").DeleteCollection(bg, metav1.DeleteOptions{}, metav1.ListOptions{})
	})
	if _, err := n.cs.AppsV1().Deployments("default").Create(ctx, hpaDeployment("worker"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "skiff-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	setRule := func(expr string) {
		t.Helper()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "metrics-rules", Namespace: "skiff-system"}, Data: map[string]string{"queue_depth": expr}}
		_, err := n.cs.CoreV1().ConfigMaps("skiff-system").Update(ctx, cm, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			_, err = n.cs.CoreV1().ConfigMaps("skiff-system").Create(ctx, cm, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	setRule(`sum(up{job="skiff-master"}) * 0`)

	zero, window, one := int32(0), int32(0), resource.MustParse("1")
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "worker"}, Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "worker"},
		MinReplicas:    &zero, MaxReplicas: 3,
		Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth"}, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: &one}}}},
		Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: &window}},
	}}
	// Pod metrics alone cannot bring a target back from zero: refused.
	cpuOnly := hpa.DeepCopy()
	cpuOnly.Name = "cpu-only"
	target := int32(50)
	cpuOnly.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
		Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &target}}}}
	if _, err := n.cs.AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, cpuOnly, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("minReplicas 0 with only a CPU metric: %v, want 422 Invalid", err)
	}
	if _, err := n.cs.AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "worker scaled to 0 on an idle queue", hpaReplicas(ctx, n, "worker", 0))
	setRule(`sum(up{job="skiff-master"}) * 2`)
	testutil.WaitFor(t, 60*time.Second, "worker scaled from 0 to 2", hpaReplicas(ctx, n, "worker", 2))
}
