package dns

import (
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are CoreDNS's request metrics, with its names, labels and
// buckets (coredns plugin/metrics), so that CoreDNS dashboards read them:
// server is "dns://:53", zone the cluster domain for its names and "."
// for the rest, view empty.
type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	responses *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "dns", Name: "requests_total",
			Help: "Counter of DNS requests made per zone, protocol and family."}, []string{"server", "zone", "view", "proto", "family", "type"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "coredns", Subsystem: "dns", Name: "request_duration_seconds",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16), Help: "Histogram of the time (in seconds) each request took per zone."},
			[]string{"server", "zone", "view", "type"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "dns", Name: "responses_total",
			Help: "Counter of response status codes."}, []string{"server", "zone", "view", "rcode", "plugin"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.responses)
	}
	return m
}

const metricsServer = "dns://:53"

// monitoredTypes are the query types CoreDNS names; others are "other".
var monitoredTypes = map[uint16]bool{
	dns.TypeA: true, dns.TypeAAAA: true, dns.TypeCNAME: true, dns.TypeHINFO: true, dns.TypeTXT: true, dns.TypePTR: true,
	dns.TypeSOA: true, dns.TypeNS: true, dns.TypeMX: true, dns.TypeDS: true, dns.TypeDNSKEY: true, dns.TypeRRSIG: true,
	dns.TypeNSEC: true, dns.TypeNSEC3: true, dns.TypeHTTPS: true, dns.TypeSVCB: true, dns.TypeIXFR: true, dns.TypeAXFR: true,
	dns.TypeANY: true, dns.TypeSRV: true,
}

// observe records one answered request.
func (m *metrics) observe(s *Server, w dns.ResponseWriter, r, reply *dns.Msg, start time.Time) {
	zone, qtype := ".", "other"
	if len(r.Question) == 1 {
		q := r.Question[0]
		if dns.IsSubDomain(s.domain, strings.ToLower(q.Name)) {
			zone = s.domain
		}
		if monitoredTypes[q.Qtype] {
			qtype = dns.TypeToString[q.Qtype]
		}
	}
	proto, family := "udp", "1"
	var ip net.IP
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		proto, ip = "tcp", a.IP
	}
	if ip != nil && ip.To4() == nil {
		family = "2"
	}
	m.requests.WithLabelValues(metricsServer, zone, "", proto, family, qtype).Inc()
	m.duration.WithLabelValues(metricsServer, zone, "", qtype).Observe(time.Since(start).Seconds())
	rcode, ok := dns.RcodeToString[reply.Rcode]
	if !ok {
		rcode = "OTHER"
	}
	m.responses.WithLabelValues(metricsServer, zone, "", rcode, "").Inc()
}
