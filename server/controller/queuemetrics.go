package controller

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"
)

// The controllers' work queues report kube-controller-manager's workqueue_*
// metrics (k8s.io/component-base/metrics/prometheus/workqueue's names,
// help and buckets) with the label name = the queue's name, through
// client-go's workqueue.MetricsProvider given to each queue.
//
// The metrics are the process's, as client-go's own provider
// (workqueue.SetProvider) is: the queues of the controllers running in this
// process. QueueMetrics is the collector a master serves in /metrics.
// Counters and histograms are per name; the gauges (depth, unfinished
// work, longest running processor) add up the live queues of a name, and a
// queue that is shut down (leadership lost) stops counting, so that the
// next leader's queue of the same name starts from its own depth.
var queueMetrics = newQueueCollector()

// QueueMetrics is the collector of the controllers' work queue metrics.
func QueueMetrics() prometheus.Collector { return queueMetrics }

type queueCollector struct {
	adds, retries     *prometheus.CounterVec
	queueDur, workDur *prometheus.HistogramVec
	depth, unfinished *prometheus.Desc
	longest           *prometheus.Desc
	mu                sync.Mutex
	live              map[*queueInstance]struct{}
}

func newQueueCollector() *queueCollector {
	buckets := prometheus.ExponentialBuckets(10e-9, 10, 10)
	return &queueCollector{
		adds: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "workqueue", Name: "adds_total",
			Help: "Total number of adds handled by workqueue"}, []string{"name"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "workqueue", Name: "retries_total",
			Help: "Total number of retries handled by workqueue"}, []string{"name"}),
		queueDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Subsystem: "workqueue", Name: "queue_duration_seconds",
			Help: "How long in seconds an item stays in workqueue before being requested.", Buckets: buckets}, []string{"name"}),
		workDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Subsystem: "workqueue", Name: "work_duration_seconds",
			Help: "How long in seconds processing an item from workqueue takes.", Buckets: buckets}, []string{"name"}),
		depth: prometheus.NewDesc("workqueue_depth", "Current depth of workqueue", []string{"name"}, nil),
		unfinished: prometheus.NewDesc("workqueue_unfinished_work_seconds",
			"How many seconds of work has done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.",
			[]string{"name"}, nil),
		longest: prometheus.NewDesc("workqueue_longest_running_processor_seconds",
			"How many seconds has the longest running processor for workqueue been running.", []string{"name"}, nil),
		live: map[*queueInstance]struct{}{},
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	c.adds.Describe(ch)
	c.retries.Describe(ch)
	c.queueDur.Describe(ch)
	c.workDur.Describe(ch)
	ch <- c.depth
	ch <- c.unfinished
	ch <- c.longest
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.adds.Collect(ch)
	c.retries.Collect(ch)
	c.queueDur.Collect(ch)
	c.workDur.Collect(ch)
	type sums struct{ depth, unfinished, longest float64 }
	by := map[string]*sums{}
	c.mu.Lock()
	for q := range c.live {
		s := by[q.name]
		if s == nil {
			s = &sums{}
			by[q.name] = s
		}
		s.depth += float64(q.depth.Load())
		s.unfinished += q.unfinished.get()
		s.longest = math.Max(s.longest, q.longest.get())
	}
	c.mu.Unlock()
	for name, s := range by {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, s.depth, name)
		ch <- prometheus.MustNewConstMetric(c.unfinished, prometheus.GaugeValue, s.unfinished, name)
		ch <- prometheus.MustNewConstMetric(c.longest, prometheus.GaugeValue, s.longest, name)
	}
}

// instance registers a new queue named name; its provider is given to the
// queue and release is called when it shuts down.
func (c *queueCollector) instance(name string) *queueInstance {
	q := &queueInstance{c: c, name: name}
	c.mu.Lock()
	c.live[q] = struct{}{}
	c.mu.Unlock()
	return q
}

// queueInstance is one queue's workqueue.MetricsProvider.
type queueInstance struct {
	c                   *queueCollector
	name                string
	depth               atomic.Int64
	unfinished, longest floatGauge
}

var _ workqueue.MetricsProvider = (*queueInstance)(nil)

func (q *queueInstance) release() {
	q.c.mu.Lock()
	delete(q.c.live, q)
	q.c.mu.Unlock()
}

func (q *queueInstance) NewDepthMetric(string) workqueue.GaugeMetric { return depthGauge{&q.depth} }
func (q *queueInstance) NewAddsMetric(name string) workqueue.CounterMetric {
	return q.c.adds.WithLabelValues(name)
}
func (q *queueInstance) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return q.c.queueDur.WithLabelValues(name)
}
func (q *queueInstance) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return q.c.workDur.WithLabelValues(name)
}
func (q *queueInstance) NewUnfinishedWorkSecondsMetric(string) workqueue.SettableGaugeMetric {
	return &q.unfinished
}
func (q *queueInstance) NewLongestRunningProcessorSecondsMetric(string) workqueue.SettableGaugeMetric {
	return &q.longest
}
func (q *queueInstance) NewRetriesMetric(name string) workqueue.CounterMetric {
	return q.c.retries.WithLabelValues(name)
}

type depthGauge struct{ n *atomic.Int64 }

func (g depthGauge) Inc() { g.n.Add(1) }
func (g depthGauge) Dec() { g.n.Add(-1) }

// floatGauge is a settable float64.
type floatGauge struct{ bits atomic.Uint64 }

func (g *floatGauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }
func (g *floatGauge) get() float64  { return math.Float64frombits(g.bits.Load()) }

// meteredQueue is a queue that leaves the metrics when it shuts down.
type meteredQueue struct {
	Queue
	m    *queueInstance
	once sync.Once
}

func (q *meteredQueue) ShutDown() {
	q.Queue.ShutDown()
	q.once.Do(q.m.release)
}

func (q *meteredQueue) ShutDownWithDrain() {
	q.Queue.ShutDownWithDrain()
	q.once.Do(q.m.release)
}
