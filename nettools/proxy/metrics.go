package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are kube-proxy's sync metrics, with its names and buckets
// (k8s.io/kubernetes/pkg/proxy/metrics).
type metrics struct {
	syncDuration prometheus.Histogram
	lastSync     prometheus.Gauge
	syncErrors   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: "kubeproxy", Name: "sync_proxy_rules_duration_seconds",
			Help: "SyncProxyRules latency in seconds", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{Subsystem: "kubeproxy", Name: "sync_proxy_rules_last_timestamp_seconds",
			Help: "The last time proxy rules were successfully synced"}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_proxy_sync_errors_total",
			Help: "Service proxy syncs that failed to program the rules (retried at the next change or resync)."}),
	}
	if reg != nil {
		reg.MustRegister(m.syncDuration, m.lastSync, m.syncErrors)
	}
	return m
}
