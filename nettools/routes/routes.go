// Package routes connects the pod networks of the nodes: every agent
// watches the Node objects and keeps, for every other node, a route to its
// podCIDR, and masquerades what pods send outside the cluster CIDR.
//
// Two backends, as flannel's:
//
//   - host-gw: a plain route "podCIDR via <node InternalIP>". The nodes must
//     share an L2 segment (the next hop must be directly reachable); no
//     encapsulation, the fastest.
//   - vxlan: a VXLAN device (skiff.vxlan, VNI 1, UDP 8472) holding the
//     network address of the node's podCIDR (10.42.N.0/32). For each other
//     node: a route "podCIDR via 10.42.M.0 dev skiff.vxlan onlink", a
//     permanent neighbour entry 10.42.M.0 → its VTEP MAC and a forwarding
//     entry VTEP MAC → its InternalIP. Works across L3 (only UDP between
//     the nodes is needed). Each agent publishes its VTEP MAC and IP in
//     Node annotations (AnnotationVTEPMAC, AnnotationVTEPIP).
//
// Pod-to-pod traffic keeps its source address (no NAT); traffic from the
// cluster CIDR to anywhere else leaves with the node's address (nftables
// table "ip skiff-masq", replaced atomically on every sync and removed on
// a clean shutdown). Routes and neighbour entries carry routing protocol
// RouteProtocol so that a restarted agent finds and resyncs its own.
package routes

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// Backend is how pod traffic crosses nodes.
type Backend string

// Backends.
const (
	HostGW Backend = "host-gw"
	VXLAN  Backend = "vxlan"
	// None leaves routing between nodes (and masquerading) to someone
	// else: Skiff adds no routes, devices or rules.
	None Backend = "none"
	// DefaultBackend works whenever the nodes reach each other over UDP,
	// whether or not they share an L2 segment (flannel's and k3s's
	// default too); host-gw is faster where it applies.
	DefaultBackend = VXLAN
)

// ParseBackend checks a --flannel-backend value.
func ParseBackend(s string) (Backend, error) {
	switch Backend(s) {
	case HostGW, VXLAN, None:
		return Backend(s), nil
	case "":
		return DefaultBackend, nil
	}
	return "", fmt.Errorf("flannel backend %q: want %s, %s or %s", s, VXLAN, HostGW, None)
}

// Node annotations the agent publishes.
const (
	AnnotationBackend = "skiff.io/flannel-backend"
	AnnotationVTEPMAC = "skiff.io/vtep-mac"
	AnnotationVTEPIP  = "skiff.io/vtep-ip"
)

// VXLAN parameters (flannel's Linux defaults).
const (
	VXLANDevice = "skiff.vxlan"
	VXLANVNI    = 1
	VXLANPort   = 8472
	// VXLANOverhead is what encapsulation adds to every packet (outer
	// Ethernet 14, IPv4 20, UDP 8, VXLAN 8).
	VXLANOverhead = 50
)

// RouteProtocol marks the routes this package owns (rtnetlink protocol
// number; "proto 83" in `ip route`).
const RouteProtocol = 83

// Peer is another node as the data plane needs it.
type Peer struct {
	Name    string
	PodCIDR netip.Prefix
	NodeIP  netip.Addr
	// VTEPMAC is the node's VXLAN device address (vxlan backend).
	VTEPMAC net.HardwareAddr
}

// Gateway is the address a vxlan route to the peer goes through: the
// network address of its podCIDR, held by its VXLAN device.
func (p Peer) Gateway() netip.Addr { return p.PodCIDR.Masked().Addr() }

// VTEPMAC derives a stable VXLAN device MAC from the node name, so that a
// device made again after a reboot keeps the address the other nodes
// know (locally administered, unicast).
func VTEPMAC(node string) net.HardwareAddr {
	h := sha256.Sum256([]byte("skiff-vtep/" + node))
	mac := net.HardwareAddr(append([]byte(nil), h[:6]...))
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}

// NodeInternalIP is the node's first IPv4 InternalIP.
func NodeInternalIP(n *corev1.Node) (netip.Addr, bool) {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// PeersFrom picks the nodes other than self that can be routed to with
// backend: they have a podCIDR and an InternalIP (and, for vxlan, a VTEP
// MAC annotation). The result is sorted by name.
func PeersFrom(nodes []*corev1.Node, self string, backend Backend) []Peer {
	var out []Peer
	for _, n := range nodes {
		if n.Name == self || n.DeletionTimestamp != nil {
			continue
		}
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil || !cidr.Addr().Is4() {
			continue
		}
		p := Peer{Name: n.Name, PodCIDR: cidr.Masked()}
		var ok bool
		if p.NodeIP, ok = NodeInternalIP(n); !ok {
			continue
		}
		if backend == VXLAN {
			mac, err := net.ParseMAC(n.Annotations[AnnotationVTEPMAC])
			if err != nil {
				continue
			}
			p.VTEPMAC = mac
			if ip, err := netip.ParseAddr(n.Annotations[AnnotationVTEPIP]); err == nil && ip.Is4() {
				p.NodeIP = ip
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// routingChanged reports whether an update touches what routes depend on
// (not the heartbeats that make most Node updates).
func routingChanged(old, cur *corev1.Node) bool {
	if old.Spec.PodCIDR != cur.Spec.PodCIDR || (old.DeletionTimestamp == nil) != (cur.DeletionTimestamp == nil) {
		return true
	}
	for _, k := range []string{AnnotationBackend, AnnotationVTEPMAC, AnnotationVTEPIP} {
		if old.Annotations[k] != cur.Annotations[k] {
			return true
		}
	}
	a, _ := NodeInternalIP(old)
	b, _ := NodeInternalIP(cur)
	return a != b
}
