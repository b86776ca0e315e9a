package server

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/apiserver"
	"github.com/skiff-io/skiff/server/registry"
)

// flowMetrics reports kube-apiserver's apiserver_flowcontrol_nominal_limit_seats
// for every PriorityLevelConfiguration: the share of the server's
// concurrency limit (--max-requests-inflight plus
// --max-mutating-requests-inflight) its nominalConcurrencyShares give it,
// computed as kube-apiserver computes it. Skiff does not enforce it
// (docs/api.md); clients that wait for a level to be configured read it.
type flowMetrics struct {
	s    *Server
	kind *registry.Kind
}

var flowNominalSeatsDesc = prometheus.NewDesc("apiserver_flowcontrol_nominal_limit_seats",
	"Nominal number of execution seats configured for each priority level (not enforced by Skiff)",
	[]string{"priority_level"}, nil)

func newFlowMetrics(s *Server) flowMetrics {
	kind, _ := registry.New().Lookup(flowcontrolv1.GroupName, "v1", "prioritylevelconfigurations")
	return flowMetrics{s: s, kind: kind}
}

func (m flowMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- flowNominalSeatsDesc }

func (m flowMetrics) Collect(ch chan<- prometheus.Metric) {
	serverCL := m.s.cfg.MaxRequestsInFlight + m.s.cfg.MaxMutatingRequestsInFlight
	if m.s.cfg.MaxRequestsInFlight <= 0 || m.s.cfg.MaxMutatingRequestsInFlight <= 0 {
		serverCL = apiserver.DefaultMaxRequestsInFlight + apiserver.DefaultMaxMutatingRequestsInFlight
	}
	shares := map[string]float64{}
	var sum float64
	m.s.fsm.Read().List(m.kind.StorageResource(), "", "", func(o *state.Object) bool {
		obj, err := m.kind.Decode(o)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(flowNominalSeatsDesc, err)
			return true
		}
		pl := obj.(*flowcontrolv1.PriorityLevelConfiguration)
		var n float64
		switch {
		case pl.Spec.Limited != nil && pl.Spec.Limited.NominalConcurrencyShares != nil:
			n = float64(*pl.Spec.Limited.NominalConcurrencyShares)
		case pl.Spec.Exempt != nil && pl.Spec.Exempt.NominalConcurrencyShares != nil:
			n = float64(*pl.Spec.Exempt.NominalConcurrencyShares)
		}
		shares[pl.Name] = n
		sum += n
		return true
	})
	for name, n := range shares {
		seats := 0.0
		if sum > 0 {
			seats = math.Ceil(float64(serverCL) * n / sum)
		}
		ch <- prometheus.MustNewConstMetric(flowNominalSeatsDesc, prometheus.GaugeValue, seats, name)
	}
}
