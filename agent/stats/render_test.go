package stats

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

type staticSource Targets

func (s staticSource) Targets(context.Context) (Targets, error) { return Targets(s), nil }

// twoPods has a PVC mounted by both pods (its series must appear once).
func twoPods(start time.Time) Targets {
	claim := VolumeTarget{Name: "data", Dir: "/x", ClaimNamespace: "ns", ClaimName: "claim"}
	return Targets{NodeName: "n1", StartTime: start, Pods: []PodTarget{
		{Namespace: "ns", Name: "a", UID: "ua", StartTime: start, Cgroup: "/pa",
			Containers: []ContainerTarget{{Name: "c", ID: "ida", Image: "img:1", StartTime: start, Cgroup: "/pa/ida"}},
			Volumes:    []VolumeTarget{claim}},
		{Namespace: "ns", Name: "b", UID: "ub", StartTime: start, Cgroup: "/pb",
			Containers: []ContainerTarget{{Name: "c", ID: "idb", Image: "img:1", StartTime: start, Cgroup: "/pb/idb"}},
			Volumes:    []VolumeTarget{claim, {Name: "scratch", Dir: "/y"}}},
	}}
}

func TestLoopRatesAndSummary(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	now := start.Add(time.Hour)
	fake := &FakeCollector{Now: func() time.Time { return now }}
	l := NewLoop(staticSource(twoPods(start)), fake, time.Second, nil)
	l.CollectOnce(context.Background())
	first := l.Latest()
	if first == nil || first.Pods[0].CPU.UsageNanoCores != 0 {
		t.Fatalf("first snapshot %+v: want no rate yet", first)
	}
	now = now.Add(10 * time.Second)
	l.CollectOnce(context.Background())
	s := l.Latest()
	ct := s.Pods[0].Containers[0]
	want := float64(ct.CPU.UsageNanoSeconds-first.Pods[0].Containers[0].CPU.UsageNanoSeconds) / 10
	if got := float64(ct.CPU.UsageNanoCores); got < want*0.99 || got > want*1.01 || got == 0 {
		t.Fatalf("nanocores %v, want %v", got, want)
	}

	b, err := json.Marshal(Summary(s))
	if err != nil {
		t.Fatal(err)
	}
	var sum statsapi.Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Node.NodeName != "n1" || len(sum.Pods) != 2 || sum.Pods[1].PodRef.Name != "b" {
		t.Fatalf("summary %s", b)
	}
	pb := sum.Pods[1]
	if len(pb.VolumeStats) != 2 || pb.VolumeStats[0].PVCRef == nil || pb.VolumeStats[0].PVCRef.Name != "claim" || pb.VolumeStats[1].PVCRef != nil {
		t.Fatalf("volumes %+v", pb.VolumeStats)
	}
	if pb.Containers[0].CPU.UsageNanoCores == nil || *pb.Containers[0].CPU.UsageNanoCores == 0 || pb.EphemeralStorage == nil {
		t.Fatalf("pod b %s", b)
	}
	if pb.Network == nil || pb.Network.Name != "eth0" {
		t.Fatalf("pod network %+v", pb.Network)
	}
}

// gather renders c in the text format and parses it back.
func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.Label {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestMetricsRender(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	l := NewLoop(staticSource(twoPods(start)), NewFakeCollector(), time.Second, nil)
	// Before the first collection: only scrape_error=1.
	fams := gather(t, ResourceMetrics(l))
	if f := fams["scrape_error"]; f == nil || f.Metric[0].GetGauge().GetValue() != 1 {
		t.Fatalf("before a collection: %v", fams)
	}
	l.CollectOnce(context.Background())

	fams = gather(t, ResourceMetrics(l))
	for name, labels := range map[string][]string{
		"node_cpu_usage_seconds_total":       nil,
		"node_memory_working_set_bytes":      nil,
		"container_cpu_usage_seconds_total":  {"container", "pod", "namespace"},
		"container_memory_working_set_bytes": {"container", "pod", "namespace"},
		"container_start_time_seconds":       {"container", "pod", "namespace"},
		"pod_cpu_usage_seconds_total":        {"pod", "namespace"},
		"pod_memory_working_set_bytes":       {"pod", "namespace"},
		"scrape_error":                       nil,
	} {
		f := fams[name]
		if f == nil {
			t.Errorf("no %s", name)
			continue
		}
		got := labelsOf(f.Metric[0])
		if len(got) != len(labels) {
			t.Errorf("%s labels %v, want %v", name, got, labels)
		}
		for _, l := range labels {
			if got[l] == "" {
				t.Errorf("%s: no label %s in %v", name, l, got)
			}
		}
	}
	if got := fams["scrape_error"].Metric[0].GetGauge().GetValue(); got != 0 {
		t.Errorf("scrape_error %v", got)
	}
	if n := len(fams["container_cpu_usage_seconds_total"].Metric); n != 2 {
		t.Errorf("%d container series, want 2", n)
	}

	fams = gather(t, CadvisorMetrics(l))
	for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_memory_rss",
		"container_memory_cache", "container_network_receive_bytes_total", "container_fs_usage_bytes", "container_oom_events_total", "machine_cpu_cores"} {
		if fams[name] == nil {
			t.Errorf("cadvisor: no %s", name)
		}
	}
	var found bool
	for _, m := range fams["container_memory_working_set_bytes"].Metric {
		lb := labelsOf(m)
		if lb["container"] == "c" && lb["pod"] == "a" && lb["namespace"] == "ns" && lb["image"] == "img:1" && lb["name"] == "ida" && lb["id"] == "/pa/ida" {
			found = true
		}
	}
	if !found {
		t.Errorf("cadvisor: no working set series for ns/a/c with its labels")
	}

	fams = gather(t, VolumeMetrics(l))
	f := fams["kubelet_volume_stats_used_bytes"]
	if f == nil || len(f.Metric) != 1 || labelsOf(f.Metric[0])["persistentvolumeclaim"] != "claim" || labelsOf(f.Metric[0])["namespace"] != "ns" {
		t.Fatalf("volume stats %v", f)
	}
}
