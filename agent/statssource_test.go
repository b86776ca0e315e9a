package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/skiff-io/skiff/agent/stats"
)

// The kubelet tells the collector about its running pods (containers,
// images, volumes) and serves the result; its own metrics count them and
// the pod's start.
func TestStatsTargetsAndSummary(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.StatsCollector = stats.NewFakeCollector()
		c.StatsInterval = 50 * time.Millisecond
	})
	p := pod("web", corev1.RestartPolicyAlways, ctr("app"))
	p.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
	h.createPod(p)
	h.waitPod("web", "running", phaseIs(corev1.PodRunning))

	var sum statsapi.Summary
	h.waitFor("the pod in /stats/summary", func() error {
		rec := httptest.NewRecorder()
		h.a.serveStatsSummary(rec, httptest.NewRequest("GET", "/stats/summary", nil))
		if rec.Code != http.StatusOK {
			return fmt.Errorf("status %d: %s", rec.Code, rec.Body)
		}
		sum = statsapi.Summary{}
		if err := json.Unmarshal(rec.Body.Bytes(), &sum); err != nil {
			return err
		}
		for _, ps := range sum.Pods {
			if ps.PodRef.Name == "web" && len(ps.Containers) == 1 && len(ps.VolumeStats) == 1 &&
				ps.Containers[0].CPU != nil && ps.Containers[0].CPU.UsageNanoCores != nil && *ps.Containers[0].CPU.UsageNanoCores > 0 {
				return nil
			}
		}
		return fmt.Errorf("summary pods %+v", sum.Pods)
	})
	if sum.Node.NodeName != testNode {
		t.Fatalf("node %q", sum.Node.NodeName)
	}
	for _, ps := range sum.Pods {
		if ps.PodRef.Name == "web" && (ps.Containers[0].Name != "app" || ps.VolumeStats[0].Name != "scratch" || ps.VolumeStats[0].PVCRef != nil) {
			t.Fatalf("pod stats %+v", ps)
		}
	}
	fams, err := h.a.kmetrics.own.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		m := f.Metric[0]
		switch {
		case m.Gauge != nil:
			got[f.GetName()] = m.Gauge.GetValue()
		case m.Histogram != nil:
			got[f.GetName()] = float64(m.Histogram.GetSampleCount())
		}
	}
	if got["kubelet_running_pods"] != 1 || got["kubelet_running_containers"] != 1 || got["kubelet_pod_start_duration_seconds"] != 1 {
		t.Fatalf("kubelet metrics %v", got)
	}
	// Stats paths are the kubelet API's: no client certificate, 401.
	rec := httptest.NewRecorder()
	h.a.requireKubeletAPI("stats", h.a.serveStatsSummary)(rec, httptest.NewRequest("GET", "/stats/summary", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("no certificate: %d", rec.Code)
	}
}
