// Package netpol enforces Kubernetes NetworkPolicies (networking.k8s.io/v1)
// for the pods of one node with nftables.
//
// The agent turns the policies, the pods (of every node: peers are
// selected by label and matched by IP) and the namespaces into, for each
// local pod, the traffic it may receive (ingress) and send (egress), and
// programs them into the table "inet skiff-netpol" of the node's network
// namespace, replaced atomically whenever the result changes:
//
//	chain forward (hook forward, priority filter, policy accept)
//	  ct state established,related accept
//	  ip saddr vmap @egress-pods   (pod isolated for egress → jump egress-<n>)
//	  ip daddr vmap @ingress-pods  (pod isolated for ingress → jump ingress-<n>)
//	chain egress-<n>:  <allowed peer/port> return ... ; drop
//	chain ingress-<n>: <allowed peer/port> accept ... ; drop
//
// A pod no policy selects (for a direction) is not isolated: everything is
// allowed, as in Kubernetes. Return traffic of allowed connections passes
// through conntrack. Same-node pod-to-pod traffic crosses the pod bridge,
// which hands it to the forward hook through br_netfilter
// (net.bridge.bridge-nf-call-iptables, which the agent sets); cross-node
// traffic is routed and meets the same chain on both nodes: egress on the
// sender's, ingress on the receiver's. Traffic between a pod and its own
// node (kubelet probes, node-local services) does not cross the forward
// hook and is not filtered.
package netpol

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// IP protocol numbers.
const (
	protoTCP  = 6
	protoUDP  = 17
	protoSCTP = 132
)

// PortRange is a transport protocol and a destination port range; From 0
// means every port of the protocol.
type PortRange struct {
	Proto    byte
	From, To uint16
}

func (p PortRange) String() string {
	name := map[byte]string{protoTCP: "tcp", protoUDP: "udp", protoSCTP: "sctp"}[p.Proto]
	switch {
	case p.From == 0:
		return name
	case p.From == p.To:
		return fmt.Sprintf("%s/%d", name, p.From)
	}
	return fmt.Sprintf("%s/%d-%d", name, p.From, p.To)
}

// Allow is one kind of allowed traffic: from (ingress) or to (egress) any
// of Peers (any address if AnyPeer) on any of Ports (any port if
// AllPorts).
type Allow struct {
	AnyPeer  bool
	Peers    []netip.Prefix
	AllPorts bool
	Ports    []PortRange
}

func (a Allow) String() string {
	peers, ports := "any", "any"
	if !a.AnyPeer {
		var s []string
		for _, p := range a.Peers {
			s = append(s, p.String())
		}
		peers = strings.Join(s, ",")
	}
	if !a.AllPorts {
		var s []string
		for _, p := range a.Ports {
			s = append(s, p.String())
		}
		ports = strings.Join(s, ",")
	}
	return peers + " ports " + ports
}

// PodRules is what one local pod may receive and send.
type PodRules struct {
	Namespace, Name string
	IP              netip.Addr
	// IngressIsolated: some policy selects the pod for ingress; only
	// Ingress is allowed in. Likewise for egress.
	IngressIsolated, EgressIsolated bool
	Ingress, Egress                 []Allow
}

// Compute returns the rules of the pods bound to node (sorted by IP),
// given every policy, pod and namespace of the cluster. Pods without an
// IP, on the host network or finished are skipped (as targets and peers).
func Compute(node string, policies []*networkingv1.NetworkPolicy, pods []*corev1.Pod, namespaces []*corev1.Namespace) []PodRules {
	nsLabels := map[string]labels.Set{}
	for _, ns := range namespaces {
		nsLabels[ns.Name] = labels.Set(ns.Labels)
	}
	var live []*corev1.Pod
	for _, p := range pods {
		if p.Spec.HostNetwork || p.Status.PodIP == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if _, err := netip.ParseAddr(p.Status.PodIP); err != nil {
			continue
		}
		live = append(live, p)
	}
	var out []PodRules
	for _, pod := range live {
		if pod.Spec.NodeName != node {
			continue
		}
		ip, _ := netip.ParseAddr(pod.Status.PodIP)
		r := PodRules{Namespace: pod.Namespace, Name: pod.Name, IP: ip}
		for _, pol := range policies {
			if pol.Namespace != pod.Namespace || !selects(&pol.Spec.PodSelector, pod.Labels) {
				continue
			}
			ingress, egress := policyTypes(pol)
			if ingress {
				r.IngressIsolated = true
				for _, rule := range pol.Spec.Ingress {
					r.Ingress = append(r.Ingress, allows(pol.Namespace, rule.From, rule.Ports, pod, true, live, nsLabels)...)
				}
			}
			if egress {
				r.EgressIsolated = true
				for _, rule := range pol.Spec.Egress {
					r.Egress = append(r.Egress, allows(pol.Namespace, rule.To, rule.Ports, pod, false, live, nsLabels)...)
				}
			}
		}
		if r.IngressIsolated || r.EgressIsolated {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out
}

// policyTypes: the listed types, or (unset) Ingress plus Egress when the
// policy has egress rules.
func policyTypes(p *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(p.Spec.PolicyTypes) == 0 {
		return true, len(p.Spec.Egress) > 0
	}
	for _, t := range p.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false // invalid selectors select nothing
	}
	return s.Matches(labels.Set(l))
}

// allows turns one rule (its peers and ports) of a policy in namespace ns
// into Allows for target: peers are pods (by IP) or address blocks. Named
// ports resolve against the target's containers for ingress and against
// each peer pod's for egress.
func allows(ns string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, target *corev1.Pod, ingress bool,
	pods []*corev1.Pod, nsLabels map[string]labels.Set) []Allow {
	var peerPods []*corev1.Pod
	var blocks []netip.Prefix
	anyPeer := len(peers) == 0
	for _, peer := range peers {
		switch {
		case peer.IPBlock != nil:
			blocks = append(blocks, ipBlock(peer.IPBlock)...)
		case peer.PodSelector != nil || peer.NamespaceSelector != nil:
			for _, p := range pods {
				if peer.NamespaceSelector == nil {
					if p.Namespace != ns {
						continue
					}
				} else if !selects(peer.NamespaceSelector, nsLabels[p.Namespace]) {
					continue
				}
				if peer.PodSelector != nil && !selects(peer.PodSelector, p.Labels) {
					continue
				}
				peerPods = append(peerPods, p)
			}
		}
	}
	numeric, named := splitPorts(ports)
	base := Allow{AnyPeer: anyPeer, AllPorts: len(ports) == 0, Ports: numeric}
	for _, p := range peerPods {
		base.Peers = append(base.Peers, podPrefix(p))
	}
	base.Peers = append(base.Peers, blocks...)
	if ingress {
		for _, np := range named {
			if pr, ok := resolve(target, np); ok {
				base.Ports = append(base.Ports, pr)
			}
		}
		named = nil
	}
	var out []Allow
	if (base.AnyPeer || len(base.Peers) > 0) && (base.AllPorts || len(base.Ports) > 0) {
		base.Peers = dedupPrefixes(base.Peers)
		out = append(out, base)
	}
	// Egress to named ports: the number depends on the peer pod.
	for _, np := range named {
		cands := peerPods
		if anyPeer {
			cands = pods
		}
		for _, p := range cands {
			if pr, ok := resolve(p, np); ok {
				out = append(out, Allow{Peers: []netip.Prefix{podPrefix(p)}, Ports: []PortRange{pr}})
			}
		}
	}
	return out
}

type namedPort struct {
	name  string
	proto byte
}

func protoOf(p *corev1.Protocol) byte {
	if p == nil {
		return protoTCP
	}
	switch *p {
	case corev1.ProtocolUDP:
		return protoUDP
	case corev1.ProtocolSCTP:
		return protoSCTP
	}
	return protoTCP
}

func splitPorts(ports []networkingv1.NetworkPolicyPort) ([]PortRange, []namedPort) {
	var numeric []PortRange
	var named []namedPort
	for _, p := range ports {
		proto := protoOf(p.Protocol)
		switch {
		case p.Port == nil:
			numeric = append(numeric, PortRange{Proto: proto})
		case p.Port.Type == intstr.String:
			named = append(named, namedPort{name: p.Port.StrVal, proto: proto})
		default:
			to := uint16(p.Port.IntVal)
			if p.EndPort != nil && *p.EndPort >= p.Port.IntVal {
				to = uint16(*p.EndPort)
			}
			numeric = append(numeric, PortRange{Proto: proto, From: uint16(p.Port.IntVal), To: to})
		}
	}
	return numeric, named
}

// resolve finds the container port named np.name with np's protocol.
func resolve(pod *corev1.Pod, np namedPort) (PortRange, bool) {
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == np.name && protoOf(&cp.Protocol) == np.proto { // "" is TCP
				return PortRange{Proto: np.proto, From: uint16(cp.ContainerPort), To: uint16(cp.ContainerPort)}, true
			}
		}
	}
	return PortRange{}, false
}

func podPrefix(p *corev1.Pod) netip.Prefix {
	ip, _ := netip.ParseAddr(p.Status.PodIP)
	return netip.PrefixFrom(ip, ip.BitLen())
}

// ipBlock is the block's CIDR less its exceptions, as prefixes (IPv4
// only: the pod network is IPv4).
func ipBlock(b *networkingv1.IPBlock) []netip.Prefix {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !cidr.Addr().Is4() {
		return nil
	}
	out := []netip.Prefix{cidr.Masked()}
	for _, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil || !ex.Addr().Is4() {
			continue
		}
		var next []netip.Prefix
		for _, p := range out {
			next = append(next, subtract(p, ex.Masked())...)
		}
		out = next
	}
	return out
}

// subtract returns p without the addresses of e, as prefixes.
func subtract(p, e netip.Prefix) []netip.Prefix {
	if !p.Overlaps(e) {
		return []netip.Prefix{p}
	}
	if e.Bits() <= p.Bits() {
		return nil // e covers p
	}
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	hiAddr := p.Addr().As4()
	bit := p.Bits()
	hiAddr[bit/8] |= 0x80 >> (bit % 8)
	hi := netip.PrefixFrom(netip.AddrFrom4(hiAddr), p.Bits()+1)
	return append(subtract(lo, e), subtract(hi, e)...)
}

func dedupPrefixes(ps []netip.Prefix) []netip.Prefix {
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr().Compare(ps[j].Addr()); c != 0 {
			return c < 0
		}
		return ps[i].Bits() < ps[j].Bits()
	})
	return slices.Compact(ps)
}
