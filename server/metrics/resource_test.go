package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// metrics.k8s.io from the kubelets' /metrics/resource series: CPU is the
// rate between the two latest samples, memory the latest working set;
// cadvisor's series of the same names are not counted again, and a pod
// with a container lacking samples is left out.
func TestResourceMetrics(t *testing.T) {
	store := openTestStore(t, t.TempDir(), StoreOptions{})
	defer store.Close()
	now := time.Now().Truncate(time.Second)
	start := now.Add(-30 * time.Second)
	l := func(kv ...string) labels.Labels { return labels.FromStrings(kv...) }
	// 0.25 cores between the two latest samples (an earlier, faster
	// stretch does not count).
	appendSamples(t, store, l("__name__", "node_cpu_usage_seconds_total", "job", "resource", "node", "n1"), start, 10*time.Second, 0, 10, 12.5)
	appendSamples(t, store, l("__name__", "node_memory_working_set_bytes", "job", "resource", "node", "n1"), start, 10*time.Second, 1e9, 2e9, 3e9)
	appendSamples(t, store, l("__name__", "node_cpu_usage_seconds_total", "job", "cadvisor", "node", "n1"), start, 10*time.Second, 0, 100, 200)
	for _, c := range []struct {
		pod, container string
		cpu            []float64
		mem            float64
	}{
		{"web", "app", []float64{1, 2}, 64 << 20},
		{"web", "side", []float64{1, 1.5}, 16 << 20},
		{"half", "a", []float64{1, 2}, 1 << 20},
		{"half", "b", []float64{1}, 1 << 20},
	} {
		appendSamples(t, store, l("__name__", "container_cpu_usage_seconds_total", "job", "resource", "namespace", "default", "pod", c.pod, "container", c.container),
			now.Add(-20*time.Second), 10*time.Second, c.cpu...)
		appendSamples(t, store, l("__name__", "container_memory_working_set_bytes", "job", "resource", "namespace", "default", "pod", c.pod, "container", c.container),
			now.Add(-10*time.Second), 10*time.Second, c.mem)
	}
	appendSamples(t, store, l("__name__", "container_cpu_usage_seconds_total", "job", "resource", "namespace", "other", "pod", "x", "container", "c"),
		now.Add(-20*time.Second), 10*time.Second, 1, 2)
	appendSamples(t, store, l("__name__", "container_memory_working_set_bytes", "job", "resource", "namespace", "other", "pod", "x", "container", "c"),
		now.Add(-10*time.Second), 10*time.Second, 1)

	rm := NewResourceMetrics(NewAPI(store, APIOptions{}), 10*time.Second)
	nodes, err := rm.NodeMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].Name != "n1" {
		t.Fatalf("nodes: %+v", nodes)
	}
	if cpu := nodes[0].Usage.Cpu().MilliValue(); cpu != 250 {
		t.Fatalf("node cpu = %dm, want 250m", cpu)
	}
	if mem := nodes[0].Usage.Memory().Value(); mem != 3e9 {
		t.Fatalf("node memory = %d", mem)
	}
	if nodes[0].Window.Duration != 10*time.Second {
		t.Fatalf("window = %v", nodes[0].Window)
	}

	pods, err := rm.PodMetrics(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 || pods[0].Name != "web" || len(pods[0].Containers) != 2 {
		t.Fatalf("pods: %+v", pods)
	}
	app := pods[0].Containers[0]
	if app.Name != "app" || app.Usage.Cpu().MilliValue() != 100 || app.Usage.Memory().Value() != 64<<20 {
		t.Fatalf("app: cpu %dm memory %d", app.Usage.Cpu().MilliValue(), app.Usage.Memory().Value())
	}
	all, err := rm.PodMetrics(context.Background(), "")
	if err != nil || len(all) != 2 {
		t.Fatalf("all namespaces: %+v %v", all, err)
	}
}
