package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	custommetricsv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// The leader writes the default rules ConfigMap skiff-system/metrics-rules;
// its pods.memory_working_set_bytes answers custom.metrics.k8s.io for a
// Deployment's pods, and a rule an operator adds (pods.load, 3 per pod)
// scales a Deployment through an HPA on that Pods metric from 1 to 3.
func TestHPACustomPodsMetricRule(t *testing.T) {
	n := startRealNodeWith(t, []string{"--metrics-scrape-interval", "1s", "--horizontal-pod-autoscaler-sync-period", "2s"},
		"--stats-interval", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		bg := context.Background()
		_ = n.cs.AutoscalingV2().HorizontalPodAutoscalers("default").DeleteCollection(bg, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = n.cs.AppsV1().Deployments("default").DeleteCollection(bg, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = n.cs.AppsV1().ReplicaSets("default").DeleteCollection(bg, metav1.DeleteOptions{}, metav1.ListOptions{})
	})
	testutil.WaitFor(t, 30*time.Second, "the default metrics rules", func() error {
		cm, err := n.cs.CoreV1().ConfigMaps("skiff-system").Get(ctx, "metrics-rules", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, k := range []string{"pods.cpu_usage_cores", "pods.memory_working_set_bytes", "pods.http_requests_per_second"} {
			if cm.Data[k] == "" {
				return fmt.Errorf("no rule %s: %v", k, cm.Data)
			}
		}
		return nil
	})
	if _, err := n.cs.AppsV1().Deployments("default").Create(ctx, hpaDeployment("api"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 90*time.Second, "pods metric memory_working_set_bytes from the default rule", func() error {
		out, err := n.kubectl("get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/memory_working_set_bytes?labelSelector=app%3Dapi")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		var l custommetricsv1beta2.MetricValueList
		if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Items) != 1 || l.Items[0].Value.Sign() <= 0 {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	// An operator's rule: 3 per pod of the app.
	cm, err := n.cs.CoreV1().ConfigMaps("skiff-system").Get(ctx, "metrics-rules", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["pods.load"] = `container_memory_working_set_bytes{container!=""} * 0 + 3`
	if _, err := n.cs.CoreV1().ConfigMaps("skiff-system").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	one := resource.MustParse("1")
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "api"}, Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "api"},
		MaxReplicas:    3,
		Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "load"}, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: &one}}}},
	}}
	if _, err := n.cs.AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 90*time.Second, "api scaled to 3 on the pods metric load", hpaReplicas(ctx, n, "api", 3))
}
