package proxy

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
)

// Stale conntrack entries (nftables mode). NAT is decided on a flow's
// first packet and remembered by conntrack, so a UDP flow (which never
// ends by itself) keeps going where its first packet went:
//   - to an endpoint that was removed, until the entry times out;
//   - nowhere, when its first packet came while the Service had no
//     endpoints: the entry holds no NAT and later packets skip the rules.
// As kube-proxy does, those entries are deleted after a sync.

// StaleFlow selects conntrack entries to delete: UDP flows to Dst (any
// address when invalid) port DstPort whose reply comes from Endpoint (any
// when invalid).
type StaleFlow struct {
	Dst      netip.Addr
	DstPort  uint16
	Endpoint netip.Addr
}

// StaleUDP lists the flows made stale by going from old to cur.
func StaleUDP(old, cur *Model) []StaleFlow {
	if old == nil {
		return nil
	}
	type key struct {
		ip   netip.Addr
		port uint16
	}
	before := map[key]*ServicePort{}
	beforeNode := map[uint16]*ServicePort{}
	for i := range old.Ports {
		p := &old.Ports[i]
		if p.Protocol != corev1.ProtocolUDP {
			continue
		}
		before[key{p.ClusterIP, p.Port}] = p
		if p.NodePort != 0 {
			beforeNode[p.NodePort] = p
		}
	}
	var out []StaleFlow
	for i := range cur.Ports {
		p := &cur.Ports[i]
		if p.Protocol != corev1.ProtocolUDP {
			continue
		}
		prev := before[key{p.ClusterIP, p.Port}]
		now := p.ClusterEndpoints()
		if len(now) > 0 && (prev == nil || len(prev.ClusterEndpoints()) == 0) {
			out = append(out, StaleFlow{Dst: p.ClusterIP, DstPort: p.Port})
		}
		if prev != nil {
			for _, e := range gone(prev.ClusterEndpoints(), now) {
				out = append(out, StaleFlow{Dst: p.ClusterIP, DstPort: p.Port, Endpoint: e.IP})
			}
		}
		if p.NodePort != 0 {
			prevN := beforeNode[p.NodePort]
			nowN := p.ExternalEndpoints()
			if len(nowN) > 0 && (prevN == nil || len(prevN.ExternalEndpoints()) == 0) {
				out = append(out, StaleFlow{DstPort: p.NodePort})
			}
			if prevN != nil {
				for _, e := range gone(prevN.ExternalEndpoints(), nowN) {
					out = append(out, StaleFlow{DstPort: p.NodePort, Endpoint: e.IP})
				}
			}
		}
	}
	return out
}

// gone returns the endpoints of a not in b.
func gone(a, b []Endpoint) []Endpoint {
	in := map[Endpoint]bool{}
	for _, e := range b {
		in[e] = true
	}
	var out []Endpoint
	for _, e := range a {
		if !in[e] {
			out = append(out, e)
		}
	}
	return out
}
