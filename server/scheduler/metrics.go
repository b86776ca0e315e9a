package scheduler

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are kube-scheduler's metrics, with its names, labels and
// buckets (k8s.io/kubernetes/pkg/scheduler/metrics). They outlive a
// scheduler: the server makes them once and gives them to the scheduler of
// each leadership term.
type Metrics struct {
	attempts    *prometheus.CounterVec
	attemptDur  *prometheus.HistogramVec
	sli         *prometheus.HistogramVec
	pendingDesc *prometheus.Desc
	// queue: the running scheduler's (nil on a follower: no pending pods
	// reported).
	queue atomic.Pointer[Queue]
}

// Scheduling results, as kube-scheduler's result label.
const (
	resultScheduled     = "scheduled"
	resultUnschedulable = "unschedulable"
	resultError         = "error"
)

// NewMetrics makes the metrics and registers them with reg (nil: kept,
// not served).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "scheduler", Name: "schedule_attempts_total",
			Help: "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem."},
			[]string{"result", "profile"}),
		attemptDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Subsystem: "scheduler", Name: "scheduling_attempt_duration_seconds",
			Help: "Scheduling attempt latency in seconds (scheduling algorithm + binding)", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)},
			[]string{"result", "profile"}),
		sli: prometheus.NewHistogramVec(prometheus.HistogramOpts{Subsystem: "scheduler", Name: "pod_scheduling_sli_duration_seconds",
			Help:    "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 20)}, []string{"attempts"}),
		pendingDesc: prometheus.NewDesc("scheduler_pending_pods",
			"Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods.",
			[]string{"queue"}, nil),
	}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.attempts.Describe(ch)
	m.attemptDur.Describe(ch)
	m.sli.Describe(ch)
	ch <- m.pendingDesc
}

func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.attempts.Collect(ch)
	m.attemptDur.Collect(ch)
	m.sli.Collect(ch)
	q := m.queue.Load()
	if q == nil {
		return
	}
	a, b, u := q.Len()
	for _, p := range []struct {
		queue string
		n     int
	}{{"active", a}, {"backoff", b}, {"unschedulable", u}} {
		ch <- prometheus.MustNewConstMetric(m.pendingDesc, prometheus.GaugeValue, float64(p.n), p.queue)
	}
}

// attempt records one scheduling attempt's result and duration.
func (m *Metrics) attempt(result string, start time.Time) {
	m.attempts.WithLabelValues(result, Name).Inc()
	m.attemptDur.WithLabelValues(result, Name).Observe(time.Since(start).Seconds())
}

// scheduled records a pod bound after attempts, queued since added.
func (m *Metrics) scheduled(start, added time.Time, attempts int) {
	m.attempt(resultScheduled, start)
	m.sli.WithLabelValues(strconv.Itoa(attempts)).Observe(time.Since(added).Seconds())
}
