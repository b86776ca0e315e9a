package agent

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
)

// The kubelet's /metrics counts and times its runtime calls with the
// kubelet's names and operation types, and counts the failed ones: a pod
// started moves run_podsandbox, create_container and start_container; a
// failed pull moves pull_image's errors.
func TestKubeletRuntimeOperationsMetrics(t *testing.T) {
	h := newHarness(t)
	scrape := func() map[string]*dto.MetricFamily {
		t.Helper()
		rec := httptest.NewRecorder()
		metricsHandler(h.a.kmetrics.own)(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		return fams
	}
	// value is the counter (or histogram count) of name for op.
	value := func(fams map[string]*dto.MetricFamily, name, op string) float64 {
		f := fams[name]
		if f == nil {
			return -1
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "operation_type" && l.GetValue() == op {
					if m.Histogram != nil {
						return float64(m.Histogram.GetSampleCount())
					}
					return m.Counter.GetValue()
				}
			}
		}
		return 0
	}
	before := scrape()
	h.createPod(pod("web", corev1.RestartPolicyAlways, ctr("app")))
	h.waitPod("web", "running", phaseIs(corev1.PodRunning))
	after := scrape()
	for _, op := range []string{"run_podsandbox", "create_container", "start_container", "list_podsandbox"} {
		if b, a := max(value(before, "kubelet_runtime_operations_total", op), 0), value(after, "kubelet_runtime_operations_total", op); a <= b {
			t.Errorf("kubelet_runtime_operations_total{operation_type=%q}: %v then %v", op, b, a)
		}
		if n := value(after, "kubelet_runtime_operations_duration_seconds", op); n < 1 {
			t.Errorf("kubelet_runtime_operations_duration_seconds{operation_type=%q} count %v", op, n)
		}
	}
	h.img.FailPulls("missing:1.0", errors.New("registry down"))
	bad := pod("bad", corev1.RestartPolicyAlways, ctr("app"))
	bad.Spec.Containers[0].Image = "missing:1.0"
	h.createPod(bad)
	h.waitFor("pull_image errors counted", func() error {
		if n := value(scrape(), "kubelet_runtime_operations_errors_total", "pull_image"); n < 1 {
			return fmt.Errorf("kubelet_runtime_operations_errors_total{operation_type=\"pull_image\"} = %v", n)
		}
		return nil
	})
}
