package agent

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/agent/stats"
)

// kubeletMetrics holds the registries behind the kubelet's metrics
// endpoints: /metrics (its own, with Go and process collectors),
// /metrics/resource and /metrics/cadvisor (from the stats loop).
type kubeletMetrics struct {
	own, resource, cadvisor *prometheus.Registry
	podStart                *podStartTracker
}

func newKubeletMetrics(a *Agent) *kubeletMetrics {
	m := &kubeletMetrics{own: prometheus.NewRegistry(), resource: prometheus.NewRegistry(), cadvisor: prometheus.NewRegistry()}
	m.podStart = newPodStartTracker()
	m.own.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.podStart.hist, m.podStart.sli,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kubelet_running_pods", Help: "Number of pods that have a running pod sandbox"},
			func() float64 { return float64(a.statsSrc.runningPods.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kubelet_running_containers", Help: "Number of containers currently running",
			ConstLabels: prometheus.Labels{"container_state": "running"}},
			func() float64 { return float64(a.statsSrc.runningContainers.Load()) }),
	)
	m.own.MustRegister(a.runtimeOps.collectors()...)
	if a.cfg.LogShipper != nil {
		m.own.MustRegister(a.cfg.LogShipper.Collectors()...)
	}
	if a.statsLoop != nil {
		m.own.MustRegister(a.statsLoop.Collectors()...)
		m.own.MustRegister(stats.VolumeMetrics(a.statsLoop))
		m.resource.MustRegister(stats.ResourceMetrics(a.statsLoop))
		m.cadvisor.MustRegister(stats.CadvisorMetrics(a.statsLoop))
	}
	return m
}

// ownAndParts is the kubelet's registry and, if any, the node's other
// parts'.
func (m *kubeletMetrics) ownAndParts(parts prometheus.Gatherer) prometheus.Gatherer {
	if parts == nil {
		return m.own
	}
	return prometheus.Gatherers{m.own, parts}
}

func metricsHandler(reg prometheus.Gatherer) http.HandlerFunc {
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return h.ServeHTTP
}

// serveStatsSummary answers the Summary API; ?only_cpu_and_memory=true
// leaves out filesystems, networks and volumes, as the kubelet does.
func (a *Agent) serveStatsSummary(w http.ResponseWriter, r *http.Request) {
	if a.statsLoop == nil {
		http.Error(w, "stats collection is not available on this node", http.StatusServiceUnavailable)
		return
	}
	snap := a.statsLoop.Latest()
	if snap == nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "stats not collected yet", http.StatusServiceUnavailable)
		return
	}
	sum := stats.Summary(snap)
	if r.URL.Query().Get("only_cpu_and_memory") == "true" {
		n := &sum.Node
		n.Fs, n.Network, n.Runtime, n.Rlimit = nil, nil, nil, nil
		for i := range sum.Pods {
			p := &sum.Pods[i]
			p.Network, p.VolumeStats, p.EphemeralStorage, p.ProcessStats = nil, nil, nil, nil
			for j := range p.Containers {
				p.Containers[j].Rootfs, p.Containers[j].Logs = nil, nil
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(sum); err != nil {
		a.log.Debug("stats summary", "err", err)
	}
}

// podStartTracker measures kubelet_pod_start_duration_seconds: from the
// kubelet first seeing a pod to the pod running (its status as the
// informer returns it); and kubelet_pod_start_sli_duration_seconds, as the
// kubelet's startup latency tracker: from the pod's creation to running,
// less the time between its first image pull's start and its last pull's
// end (init containers' run time is not taken off). Pods already running
// when first seen (an agent restart) are not measured.
type podStartTracker struct {
	mu    sync.Mutex
	first map[types.UID]time.Time
	done  map[types.UID]bool
	// pulls: the first pull's start and the last pull's end of a pod not
	// yet running.
	pulls map[types.UID][2]time.Time
	hist  prometheus.Histogram
	sli   prometheus.Histogram
}

func newPodStartTracker() *podStartTracker {
	return &podStartTracker{
		first: map[types.UID]time.Time{}, done: map[types.UID]bool{}, pulls: map[types.UID][2]time.Time{},
		hist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubelet_pod_start_duration_seconds",
			Help:    "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
			Buckets: podStartBuckets,
		}),
		sli: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubelet_pod_start_sli_duration_seconds",
			Help:    "Duration in seconds to start a pod, excluding time to pull images, measured from pod creation timestamp to when the pod is observed running",
			Buckets: podStartBuckets,
		}),
	}
}

func (t *podStartTracker) observe(pod *corev1.Pod) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done[pod.UID] {
		return
	}
	running := pod.Status.Phase == corev1.PodRunning
	first, ok := t.first[pod.UID]
	switch {
	case !ok && running:
		t.done[pod.UID] = true
	case !ok:
		t.first[pod.UID] = time.Now()
	case running:
		t.hist.Observe(time.Since(first).Seconds())
		if !pod.CreationTimestamp.IsZero() {
			d := time.Since(pod.CreationTimestamp.Time)
			if p, ok := t.pulls[pod.UID]; ok && p[1].After(p[0]) {
				d -= p[1].Sub(p[0])
			}
			t.sli.Observe(max(d, 0).Seconds())
		}
		t.done[pod.UID] = true
		delete(t.first, pod.UID)
		delete(t.pulls, pod.UID)
	}
}

// pulled records an image pull of a pod from start to now.
func (t *podStartTracker) pulled(uid types.UID, start time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done[uid] {
		return
	}
	p, ok := t.pulls[uid]
	if !ok || start.Before(p[0]) {
		p[0] = start
	}
	p[1] = time.Now()
	t.pulls[uid] = p
}

var podStartBuckets = []float64{0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600}

func (t *podStartTracker) forget(uid types.UID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.first, uid)
	delete(t.done, uid)
	delete(t.pulls, uid)
}

// Stats is the node's resource stats for an in-process reader (a master
// reading its embedded agent, a hollow-node process its nodes): nil when
// this node collects none.
func (a *Agent) Stats() stats.Provider {
	if a.statsLoop == nil {
		return nil
	}
	return a.statsLoop
}
