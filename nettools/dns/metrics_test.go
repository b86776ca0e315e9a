package dns

import (
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: answered queries are counted with CoreDNS's names and
// labels, by zone, type and rcode.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts := startServer(t, Config{Registerer: reg})
	fixture(ts)
	expect(t, ts.query("web.default.svc.cluster.local.", dns.TypeA), dns.RcodeSuccess, "A 10.43.0.20")
	ts.query("nope.default.svc.cluster.local.", dns.TypeA)
	ts.query("web.default.svc.cluster.local.", dns.TypeSRV)
	m := ts.s.metrics
	for _, c := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.requests.WithLabelValues(metricsServer, "cluster.local.", "", "udp", "1", "A"), 2},
		{m.requests.WithLabelValues(metricsServer, "cluster.local.", "", "udp", "1", "SRV"), 1},
		{m.responses.WithLabelValues(metricsServer, "cluster.local.", "", "NXDOMAIN", ""), 1},
		{m.responses.WithLabelValues(metricsServer, "cluster.local.", "", "NOERROR", ""), 2},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%v = %v, want %v", c.c, got, c.want)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "coredns_dns_request_duration_seconds"); err != nil || n != 2 {
		t.Errorf("duration series: %d %v", n, err)
	}
}
