package stats

import (
	"context"
	"log/slog"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Loop runs a Collector every Interval and keeps the latest Snapshot,
// with CPU rates from the one before.
type Loop struct {
	Source    Source
	Collector Collector
	// Interval is the collection period (10s when zero).
	Interval time.Duration
	Logger   *slog.Logger

	latest atomic.Pointer[Snapshot]
	// failing is whether the last collection failed (logged on change).
	failing bool

	duration prometheus.Histogram
	errors   prometheus.Counter
	partial  prometheus.Counter
}

// NewLoop returns a Loop; Run starts it.
func NewLoop(src Source, c Collector, interval time.Duration, log *slog.Logger) *Loop {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	return &Loop{
		Source: src, Collector: c, Interval: interval, Logger: log,
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "skiff_stats_collection_duration_seconds",
			Help:    "Time one collection of the node's resource stats (cgroups, /proc, directory walks) took.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_stats_collection_errors_total",
			Help: "Collections of the node's resource stats that failed as a whole.",
		}),
		partial: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_stats_target_errors_total",
			Help: "Pods, containers or volumes a collection could not measure in full.",
		}),
	}
}

// Collectors are the loop's own metrics, for the kubelet's /metrics.
func (l *Loop) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.duration, l.errors, l.partial}
}

// Latest is the last snapshot, nil before the first.
func (l *Loop) Latest() *Snapshot { return l.latest.Load() }

// Run collects at once and then every Interval until ctx ends.
func (l *Loop) Run(ctx context.Context) {
	t := time.NewTicker(l.Interval)
	defer t.Stop()
	for {
		l.CollectOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// CollectOnce runs one collection and publishes it.
func (l *Loop) CollectOnce(ctx context.Context) {
	start := time.Now()
	snap, err := l.collect(ctx)
	l.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		l.errors.Inc()
		if !l.failing {
			l.Logger.Warn("stats collection failing", "err", err)
			l.failing = true
		}
		return
	}
	if l.failing {
		l.Logger.Info("stats collection recovered")
		l.failing = false
	}
	l.partial.Add(float64(snap.Errors))
	addRates(snap, l.latest.Load())
	l.latest.Store(snap)
}

func (l *Loop) collect(ctx context.Context) (*Snapshot, error) {
	t, err := l.Source.Targets(ctx)
	if err != nil {
		return nil, err
	}
	return l.Collector.Collect(ctx, t)
}

// addRates fills UsageNanoCores from the previous snapshot's counters
// (a target new since then, or whose counter went back, gets none).
func addRates(cur, prev *Snapshot) {
	if prev == nil {
		return
	}
	dt := cur.Time.Sub(prev.Time).Seconds()
	if dt <= 0 {
		return
	}
	rate := func(c *CPUStats, p uint64) {
		if c.UsageNanoSeconds >= p {
			c.UsageNanoCores = uint64(float64(c.UsageNanoSeconds-p) / dt)
		}
	}
	rate(&cur.Node.CPU, prev.Node.CPU.UsageNanoSeconds)
	pods := make(map[string]*PodStats, len(prev.Pods))
	for i := range prev.Pods {
		pods[prev.Pods[i].UID] = &prev.Pods[i]
	}
	for i := range cur.Pods {
		p := &cur.Pods[i]
		pp := pods[p.UID]
		if pp == nil {
			continue
		}
		rate(&p.CPU, pp.CPU.UsageNanoSeconds)
		for j := range p.Containers {
			c := &p.Containers[j]
			for _, pc := range pp.Containers {
				if pc.ID == c.ID {
					rate(&c.CPU, pc.CPU.UsageNanoSeconds)
					break
				}
			}
		}
	}
}

func sortInterfaces(l []InterfaceStats) {
	sort.Slice(l, func(i, j int) bool { return l[i].Name < l[j].Name })
}
