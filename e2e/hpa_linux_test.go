package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	custommetricsv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	externalmetricsv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// hpaDeployment is a Deployment of idle busybox pods requesting 100m CPU.
func hpaDeployment(name string) *appsv1.Deployment {
	one, grace := int32(1), int64(1)
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: appsv1.DeploymentSpec{
		Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "main", Image: busyboxRef, ImagePullPolicy: corev1.PullIfNotPresent,
				Command:   []string{"sleep", "3600"},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}},
		}}}}
}

// TestHorizontalPodAutoscaler (issue 19 item 5): with real containers,
// an HPA on CPU scales a Deployment from 1 to its max while a busy loop
// started with kubectl exec runs in its pod, and back to 1 once the loop
// is killed and the (short) scale-down window has passed, with events
// saying why; an HPA on an external metric (a PromQL rule in the
// skiff-system/metrics-rules ConfigMap) scales another Deployment, and
// external.metrics.k8s.io answers kubectl get --raw.
func TestHorizontalPodAutoscaler(t *testing.T) {
	n := startRealNodeWith(t, []string{"--metrics-scrape-interval", "1s", "--horizontal-pod-autoscaler-sync-period", "2s"},
		"--stats-interval", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		// Before the node's cleanup deletes the pods: nothing may
		// recreate them.
		bg := context.Background()
		_ = n.cs.AutoscalingV2().HorizontalPodAutoscalers("default").DeleteCollection(bg, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = n.cs.AppsV1().Deployments("default").DeleteCollection(bg, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = n.cs.AppsV1().ReplicaSets("default").DeleteCollection(bg, metav1.DeleteOptions{}, metav1.ListOptions{})
	})
	for _, d := range []string{"web", "queue"} {
		if _, err := n.cs.AppsV1().Deployments("default").Create(ctx, hpaDeployment(d), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	readyPods := func(app string) ([]corev1.Pod, error) {
		l, err := n.cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return nil, err
		}
		var out []corev1.Pod
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil && podIsReady(&p) {
				out = append(out, p)
			}
		}
		return out, nil
	}
	var web string
	testutil.WaitFor(t, 90*time.Second, "the web pod running", func() error {
		pods, err := readyPods("web")
		if err != nil || len(pods) != 1 {
			return fmt.Errorf("%d ready web pods, %v", len(pods), err)
		}
		web = pods[0].Name
		return nil
	})

	// The HPA: 50% of the 100m request, 1 to 3 pods, a 5 s scale-down
	// window.
	target, window := int32(50), int32(5)
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
		MaxReplicas:    3,
		Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &target}}}},
		Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: &window}},
	}}
	if _, err := n.cs.AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Idle: measured, and no rescale.
	testutil.WaitFor(t, 60*time.Second, "the idle pod measured", func() error {
		out, err := n.kubectl("get", "hpa", "web", "--no-headers")
		if err != nil || !strings.Contains(out, "cpu: ") || strings.Contains(out, "<unknown>") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	// Load: a busy loop started by exec, its PID kept to kill it later.
	if out, err := n.kubectl("exec", web, "--", "sh", "-c", "while :; do :; done >/dev/null 2>&1 </dev/null & echo $! > /tmp/burn"); err != nil {
		t.Fatalf("exec: %v: %s", err, out)
	}
	testutil.WaitFor(t, 120*time.Second, "web scaled up to 3", hpaReplicas(ctx, n, "web", 3))
	upEvent := hpaEvent(ctx, t, n, "web", "cpu resource utilization (percentage of request) above target")
	t.Logf("scale up: %s", upEvent)
	if out, err := n.kubectl("get", "hpa", "web", "--no-headers"); err != nil || !strings.Contains(out, "Deployment/web") || !strings.Contains(out, "/50%") {
		t.Fatalf("get hpa: %v: %s", err, out)
	}

	// custom.metrics.k8s.io: a pods metric from the kubelet's series (a
	// counter: its rate), per pod of the label selector; an object metric
	// (the namespace's).
	testutil.WaitFor(t, 30*time.Second, "custom.metrics.k8s.io pods metric", func() error {
		out, err := n.kubectl("get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/container_cpu_usage_seconds_total?labelSelector=app%3Dweb")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		var l custommetricsv1beta2.MetricValueList
		if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Items) == 0 {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, v := range l.Items {
			if v.DescribedObject.Kind != "Pod" || !strings.HasPrefix(v.DescribedObject.Name, "web-") {
				return fmt.Errorf("item %+v", v)
			}
			if v.DescribedObject.Name == web && v.Value.Cmp(resource.MustParse("100m")) < 0 {
				return fmt.Errorf("the busy pod uses %s cores", v.Value.String())
			}
		}
		return nil
	})
	if out, err := n.kubectl("get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/metrics/container_cpu_usage_seconds_total"); err != nil ||
		!strings.Contains(out, `"kind":"Namespace"`) {
		t.Fatalf("namespace metric: %v: %s", err, out)
	}

	// No load: back to 1 after the window.
	if out, err := n.kubectl("exec", web, "--", "sh", "-c", "kill $(cat /tmp/burn)"); err != nil {
		t.Fatalf("exec kill: %v: %s", err, out)
	}
	testutil.WaitFor(t, 120*time.Second, "web scaled down to 1", hpaReplicas(ctx, n, "web", 1))
	t.Logf("scale down: %s", hpaEvent(ctx, t, n, "web", "All metrics below target"))
	if out, err := n.kubectl("describe", "hpa", "web"); err != nil || !strings.Contains(out, "ScalingActive") ||
		!strings.Contains(out, "SuccessfulRescale") || !strings.Contains(out, "All metrics below target") {
		t.Fatalf("describe hpa: %v: %s", err, out)
	}
	h, err := n.cs.AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[autoscalingv2.HorizontalPodAutoscalerConditionType]string{}
	for _, c := range h.Status.Conditions {
		conds[c.Type] = string(c.Status) + "/" + c.Reason
	}
	if conds[autoscalingv2.ScalingActive] != "True/ValidMetricFound" || !strings.HasPrefix(conds[autoscalingv2.AbleToScale], "True/") || h.Status.LastScaleTime == nil {
		t.Fatalf("status: %+v", h.Status)
	}

	// An external metric: a rule over a series the master scrapes (its
	// own up, 1), times 3, against a target of 1: 3 replicas.
	if _, err := n.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "skiff-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	rules := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "metrics-rules", Namespace: "skiff-system"},
		Data: map[string]string{"queue_depth": `sum(up{job="skiff-master"}) * 3`}}
	// The leader wrote the default rules; the test's rule replaces them.
	if _, err := n.cs.CoreV1().ConfigMaps("skiff-system").Update(ctx, rules, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "external.metrics.k8s.io answers", func() error {
		out, err := n.kubectl("get", "--raw", "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth?labelSelector=job%3Dskiff-master")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		var l externalmetricsv1beta1.ExternalMetricValueList
		if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Items) != 1 || l.Items[0].Value.Cmp(resource.MustParse("3")) != 0 {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	one := resource.MustParse("1")
	qhpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "queue"}, Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "queue"},
		MaxReplicas:    3,
		Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth"}, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: &one}}}},
	}}
	if _, err := n.cs.AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, qhpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 90*time.Second, "queue scaled to 3 on the external metric", hpaReplicas(ctx, n, "queue", 3))
	t.Logf("external: %s", hpaEvent(ctx, t, n, "queue", "external metric queue_depth(nil) above target"))
	if out, err := n.kubectl("get", "hpa", "queue", "--no-headers"); err != nil || !strings.Contains(out, "3/1") {
		t.Fatalf("get hpa queue: %v: %s", err, out)
	}
}

// hpaEvent waits for a SuccessfulRescale event of HPA name whose message
// contains want, and returns its message.
// hpaReplicas is a WaitFor condition: Deployment name in default has
// want replicas (the HPA's line in the error otherwise).
func hpaReplicas(ctx context.Context, n *realNode, name string, want int32) func() error {
	return func() error {
		d, err := n.cs.AppsV1().Deployments("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if *d.Spec.Replicas != want {
			out, _ := n.kubectl("get", "hpa", name, "--no-headers")
			return fmt.Errorf("replicas %d; hpa: %s", *d.Spec.Replicas, out)
		}
		return nil
	}
}

func hpaEvent(ctx context.Context, t *testing.T, n *realNode, name, want string) string {
	t.Helper()
	var msg string
	testutil.WaitFor(t, 30*time.Second, "event "+want, func() error {
		l, err := n.cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
			"involvedObject.kind": "HorizontalPodAutoscaler", "involvedObject.name": name, "reason": "SuccessfulRescale"}.String()})
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range l.Items {
			if strings.HasPrefix(e.Message, "New size: ") && strings.Contains(e.Message, "reason: "+want) {
				msg = e.Message
				return nil
			}
			seen = append(seen, e.Message)
		}
		return fmt.Errorf("no SuccessfulRescale %q among %q", want, seen)
	})
	return msg
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
