package shipper

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	read       prometheus.Counter
	shipped    *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	sendErrors *prometheus.CounterVec
	spoolBytes prometheus.GaugeFunc
	lag        *prometheus.GaugeVec
}

func newMetrics(spoolBytes func() float64) *metrics {
	return &metrics{
		read: prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_shipper_read_lines_total",
			Help: "Log lines (records) the shipper read from container logs."}),
		shipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_shipper_shipped_lines_total",
			Help: "Log records a destination acknowledged."}, []string{"destination"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_shipper_dropped_lines_total",
			Help: "Log records dropped: reason rate_limit or tap_full (own-log queue full; destination all), spool_full (per destination not yet served), rejected (a destination refused them)."},
			[]string{"destination", "reason"}),
		sendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_shipper_send_errors_total",
			Help: "Failed deliveries (retried) per destination."}, []string{"destination"}),
		spoolBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "skiff_shipper_spool_bytes",
			Help: "Bytes in the shipper's on-disk spool."}, spoolBytes),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "skiff_shipper_pending_lines",
			Help: "Records in the spool a destination has not acknowledged yet."}, []string{"destination"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.read, m.shipped, m.dropped, m.sendErrors, m.spoolBytes, m.lag}
}
