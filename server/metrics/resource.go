package metrics

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// ResourceMetrics computes metrics.k8s.io objects from the kubelets'
// /metrics/resource series in the store, as metrics-server does: CPU is the
// rate between the two most recent samples of a *_cpu_usage_seconds_total
// counter (PromQL irate), memory the latest working set.
type ResourceMetrics struct {
	api *API
	// window is the scrape interval: the time between the two samples
	// the CPU rate is taken over (reported as the objects' window).
	window time.Duration
}

// NewResourceMetrics answers metrics.k8s.io from api's store, scraped every
// interval.
func NewResourceMetrics(api *API, interval time.Duration) *ResourceMetrics {
	if interval <= 0 {
		interval = DefaultScrapeInterval
	}
	return &ResourceMetrics{api: api, window: interval}
}

// lookback: how far back the two latest samples are looked for; a node or
// container not scraped for longer has no metrics.
func (m *ResourceMetrics) lookback() string {
	return fmt.Sprintf("%ds", int(max(3*m.window, 30*time.Second).Seconds()))
}

type usage struct{ cpu, mem *float64 }

// NodeMetrics of every node the store has recent resource samples of.
func (m *ResourceMetrics) NodeMetrics(ctx context.Context) ([]metricsv1beta1.NodeMetrics, error) {
	now := time.Now()
	byNode := map[string]*usage{}
	if err := m.collect(ctx, now, "node_cpu_usage_seconds_total", "node_memory_working_set_bytes", func(l func(string) string, cpu, mem *float64) {
		u := byNode[l("node")]
		if u == nil {
			u = &usage{}
			byNode[l("node")] = u
		}
		if cpu != nil {
			u.cpu = cpu
		}
		if mem != nil {
			u.mem = mem
		}
	}); err != nil {
		return nil, err
	}
	out := make([]metricsv1beta1.NodeMetrics, 0, len(byNode))
	for name, u := range byNode {
		if u.cpu == nil || u.mem == nil || name == "" {
			continue // a single sample yet: no rate
		}
		out = append(out, metricsv1beta1.NodeMetrics{
			ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(now.Truncate(time.Second))},
			Timestamp:  metav1.NewTime(now.Truncate(time.Second)),
			Window:     metav1.Duration{Duration: m.window},
			Usage:      usageList(*u.cpu, *u.mem),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// PodMetrics of the pods of namespace ("": all) with recent samples of
// every container.
func (m *ResourceMetrics) PodMetrics(ctx context.Context, namespace string) ([]metricsv1beta1.PodMetrics, error) {
	now := time.Now()
	type podKey struct{ ns, pod string }
	pods := map[podKey]map[string]*usage{}
	sel := ""
	if namespace != "" {
		sel = fmt.Sprintf(`namespace=%q`, namespace)
	}
	if err := m.collectSel(ctx, now, "container_cpu_usage_seconds_total", "container_memory_working_set_bytes", sel, func(l func(string) string, cpu, mem *float64) {
		k := podKey{l("namespace"), l("pod")}
		if k.pod == "" || l("container") == "" {
			return
		}
		if pods[k] == nil {
			pods[k] = map[string]*usage{}
		}
		u := pods[k][l("container")]
		if u == nil {
			u = &usage{}
			pods[k][l("container")] = u
		}
		if cpu != nil {
			u.cpu = cpu
		}
		if mem != nil {
			u.mem = mem
		}
	}); err != nil {
		return nil, err
	}
	out := make([]metricsv1beta1.PodMetrics, 0, len(pods))
	for k, containers := range pods {
		pm := metricsv1beta1.PodMetrics{
			ObjectMeta: metav1.ObjectMeta{Name: k.pod, Namespace: k.ns, CreationTimestamp: metav1.NewTime(now.Truncate(time.Second))},
			Timestamp:  metav1.NewTime(now.Truncate(time.Second)),
			Window:     metav1.Duration{Duration: m.window},
		}
		complete := true
		for name, u := range containers {
			if u.cpu == nil || u.mem == nil {
				complete = false
				break
			}
			pm.Containers = append(pm.Containers, metricsv1beta1.ContainerMetrics{Name: name, Usage: usageList(*u.cpu, *u.mem)})
		}
		if !complete {
			continue // as metrics-server: a pod is reported whole or not at all
		}
		sort.Slice(pm.Containers, func(i, j int) bool { return pm.Containers[i].Name < pm.Containers[j].Name })
		out = append(out, pm)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func (m *ResourceMetrics) collect(ctx context.Context, now time.Time, cpuName, memName string, f func(func(string) string, *float64, *float64)) error {
	return m.collectSel(ctx, now, cpuName, memName, "", f)
}

// collectSel runs the CPU and memory queries over the resource job's
// series and hands each sample's labels and value to f.
func (m *ResourceMetrics) collectSel(ctx context.Context, now time.Time, cpuName, memName, sel string, f func(func(string) string, *float64, *float64)) error {
	matchers := `job="` + JobResource + `"`
	if sel != "" {
		matchers += "," + sel
	}
	cpu, err := m.api.Instant(ctx, fmt.Sprintf(`irate(%s{%s}[%s])`, cpuName, matchers, m.lookback()), now)
	if err != nil {
		return fmt.Errorf("cpu usage: %w", err)
	}
	for _, s := range cpu {
		v := s.F
		f(s.Metric.Get, &v, nil)
	}
	mem, err := m.api.Instant(ctx, fmt.Sprintf(`last_over_time(%s{%s}[%s])`, memName, matchers, m.lookback()), now)
	if err != nil {
		return fmt.Errorf("memory working set: %w", err)
	}
	for _, s := range mem {
		v := s.F
		f(s.Metric.Get, nil, &v)
	}
	return nil
}

// usageList: CPU in nanocores, memory in bytes (Ki), as metrics-server
// answers them.
func usageList(cpu, mem float64) corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewScaledQuantity(int64(cpu*1e9), resource.Nano),
		corev1.ResourceMemory: *resource.NewQuantity(int64(mem), resource.BinarySI),
	}
}
