package apiserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// HorizontalPodAutoscalers: kubectl autoscale and get hpa with kubectl
// 1.27 to 1.33; one object served at autoscaling/v2 and v1 (v2-only
// metrics in v1's annotations, kept by a v1 update); 422 with field
// paths; the TARGETS column once the status has a measurement.
func TestHorizontalPodAutoscalerAPI(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	one := int32(1)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: appsv1.DeploymentSpec{
		Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}}}
	if _, err := e.cs.AppsV1().Deployments("default").Create(e.ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig := writeKubeconfig(t, e.srv)
	bins := kubectlBinaries(t)
	for _, v := range []string{"1.28", "1.29", "1.30", "1.31", "1.32"} {
		if p := "/usr/lib/google-cloud-sdk/bin/kubectl." + v; fileExists(p) {
			bins = append(bins, p)
		}
	}
	for i, bin := range bins {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			home := t.TempDir()
			run := func(args ...string) string {
				t.Helper()
				ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kubeconfig, "--request-timeout=20s"}, args...)...)
				cmd.Env = append(os.Environ(), "HOME="+home, "KUBECACHEDIR="+filepath.Join(home, "cache"))
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return string(out)
			}
			name := fmt.Sprintf("web-%d", i)
			run("autoscale", "deployment", "web", "--cpu-percent=50", "--min=1", "--max=4", "--name", name)
			out := run("get", "hpa", name)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE" {
				t.Fatalf("get hpa:\n%s", out)
			}
			f := strings.Fields(lines[1])
			if f[0] != name || f[1] != "Deployment/web" || !strings.Contains(lines[1], "/50%") || f[len(f)-4] != "1" || f[len(f)-3] != "4" {
				t.Fatalf("get hpa row:\n%s", out)
			}
			// Discovery with the metrics groups listed still works.
			out = run("api-resources")
			if !strings.Contains(out, "horizontalpodautoscalers") || !strings.Contains(out, "hpa") {
				t.Fatalf("api-resources:\n%s", out)
			}
			if out := run("get", "horizontalpodautoscalers.v1.autoscaling", name, "-o", "jsonpath={.spec.targetCPUUtilizationPercentage}"); out != "50" {
				t.Fatalf("v1 target: %q", out)
			}
		})
	}

	// One object, two versions.
	avg := resource.MustParse("30")
	h := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "queue"}, Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}, MaxReplicas: 5,
		Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth"},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: &avg}}}}}}
	got, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers("default").Create(e.ctx, h, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *got.Spec.MinReplicas != 1 || len(got.Spec.Metrics) != 1 {
		t.Fatalf("created: %+v", got.Spec)
	}
	v1, err := e.cs.AutoscalingV1().HorizontalPodAutoscalers("default").Get(e.ctx, "queue", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v1.Spec.TargetCPUUtilizationPercentage != nil || !strings.Contains(v1.Annotations["autoscaling.alpha.kubernetes.io/metrics"], "queue_depth") {
		t.Fatalf("v1 read: %+v", v1)
	}
	v1.Spec.MaxReplicas = 7
	if _, err := e.cs.AutoscalingV1().HorizontalPodAutoscalers("default").Update(e.ctx, v1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err = e.cs.AutoscalingV2().HorizontalPodAutoscalers("default").Get(e.ctx, "queue", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.MaxReplicas != 7 || len(got.Spec.Metrics) != 1 || got.Spec.Metrics[0].External == nil || got.Annotations != nil {
		t.Fatalf("after a v1 update: %+v %v", got.Spec, got.Annotations)
	}
	// The field manager converts between the versions: the v1 writer is a
	// manager of its own, at v1.
	managers := map[string]bool{}
	for _, f := range got.ManagedFields {
		managers[f.APIVersion+" "+string(f.Operation)] = true
	}
	if !managers["autoscaling/v2 Update"] || !managers["autoscaling/v1 Update"] {
		t.Fatalf("managed fields: %+v", got.ManagedFields)
	}

	// The status: the controller's measurement shows in TARGETS.
	cpu := int32(50)
	got.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
		Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &cpu}}}}
	if got, err = e.cs.AutoscalingV2().HorizontalPodAutoscalers("default").Update(e.ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cur := int32(45)
	got.Status = autoscalingv2.HorizontalPodAutoscalerStatus{CurrentReplicas: 2, DesiredReplicas: 2, CurrentMetrics: []autoscalingv2.MetricStatus{{
		Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricStatus{Name: corev1.ResourceCPU,
			Current: autoscalingv2.MetricValueStatus{AverageUtilization: &cur}}}}}
	if _, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers("default").UpdateStatus(e.ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1", "v2"} {
		r := e.do("GET", "/apis/autoscaling/"+v+"/namespaces/default/horizontalpodautoscalers/queue", "", nil,
			"Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
		var table metav1.Table
		if err := json.Unmarshal(r.body, &table); err != nil || len(table.Rows) != 1 {
			t.Fatalf("%s table: %d %s", v, r.code, r.body)
		}
		if c := table.Rows[0].Cells; c[2] != "cpu: 45%/50%" || c[5] != float64(2) {
			t.Fatalf("%s row: %v", v, c)
		}
	}
	v1, err = e.cs.AutoscalingV1().HorizontalPodAutoscalers("default").Get(e.ctx, "queue", metav1.GetOptions{})
	if err != nil || *v1.Status.CurrentCPUUtilizationPercentage != 45 || *v1.Spec.TargetCPUUtilizationPercentage != 50 {
		t.Fatalf("v1 status: %v %+v", err, v1)
	}

	// Invalid objects: 422 with the field paths, at either version.
	for _, tc := range []struct{ path, body, field string }{
		{"/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers",
			`{"metadata":{"name":"bad"},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"minReplicas":3,"maxReplicas":2}}`,
			"spec.maxReplicas"},
		{"/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers",
			`{"metadata":{"name":"bad"},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"maxReplicas":2,
			"behavior":{"scaleDown":{"policies":[{"type":"Pods","value":1,"periodSeconds":4000}]}}}}`,
			"spec.behavior.scaleDown.policies[0].periodSeconds"},
		{"/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers",
			`{"metadata":{"name":"bad"},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"maxReplicas":2,"targetCPUUtilizationPercentage":0}}`,
			"spec.metrics[0].resource.target.averageUtilization"},
	} {
		r := e.do("POST", tc.path, "application/json", []byte(tc.body))
		var st metav1.Status
		if err := json.Unmarshal(r.body, &st); err != nil || r.code != http.StatusUnprocessableEntity || st.Details == nil ||
			len(st.Details.Causes) == 0 || st.Details.Causes[0].Field != tc.field {
			t.Fatalf("POST %s: %d %s", tc.path, r.code, r.body)
		}
	}
}
