package proxy

import (
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// HostPort is one container port of a pod on this node published on the
// node with hostPort (what the CNI portmap plugin does for kubelets that
// use it): traffic to the node's HostPort (on HostIP, or on any of the
// node's addresses when HostIP is unset) goes to the pod's PodIP:Port.
type HostPort struct {
	Namespace, Pod string
	Protocol       corev1.Protocol // TCP or UDP
	// HostIP: the address the port answers on; invalid: every local address.
	HostIP   netip.Addr
	HostPort uint16
	PodIP    netip.Addr
	Port     uint16
}

func (h HostPort) String() string {
	ip := "*"
	if h.HostIP.IsValid() {
		ip = h.HostIP.String()
	}
	return fmt.Sprintf("%s/%s %s:%d/%s -> %s", h.Namespace, h.Pod, ip, h.HostPort, h.Protocol,
		netip.AddrPortFrom(h.PodIP, h.Port))
}

// HostPortsOf lists the host ports of pods (the node's): pods with an
// IPv4 pod address that are not finished and not on the host's network
// (a host-network pod's process binds the port itself). SCTP and non-IPv4
// host IPs are left out. The result is sorted.
func HostPortsOf(pods []*corev1.Pod) []HostPort {
	var out []HostPort
	for _, pod := range pods {
		if pod.Spec.HostNetwork || pod.DeletionTimestamp != nil ||
			pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		podIP, err := netip.ParseAddr(pod.Status.PodIP)
		if err != nil || !podIP.Is4() {
			continue
		}
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.HostPort <= 0 || p.HostPort > 65535 || p.ContainerPort <= 0 || p.ContainerPort > 65535 {
					continue
				}
				proto := p.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				if proto != corev1.ProtocolTCP && proto != corev1.ProtocolUDP {
					continue
				}
				h := HostPort{Namespace: pod.Namespace, Pod: pod.Name, Protocol: proto,
					HostPort: uint16(p.HostPort), PodIP: podIP, Port: uint16(p.ContainerPort)}
				if p.HostIP != "" {
					ip, err := netip.ParseAddr(p.HostIP)
					if err != nil || !ip.Is4() {
						continue
					}
					if !ip.IsUnspecified() {
						h.HostIP = ip
					}
				}
				out = append(out, h)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// hostPortRules are the "hostports" chain's rules: each host port is
// marked for masquerade (the pod is on the node's bridge: without
// masquerade a reply to a client pod on the same bridge, or to the node's
// loopback, would skip the reverse NAT) and DNATed to the pod.
func hostPortRules(hps []HostPort) []Rule {
	var rules []Rule
	for _, h := range hps {
		m := Match{Proto: h.Protocol, DPort: h.HostPort}
		if h.HostIP.IsValid() {
			m.DAddr = h.HostIP
		} else {
			m.LocalDst = true
		}
		rules = append(rules, Rule{Match: m, Do: []Stmt{
			{Kind: StmtMark},
			{Kind: StmtDNAT, Endpoint: Endpoint{IP: h.PodIP, Port: h.Port}, Proto: h.Protocol},
		}})
	}
	return rules
}
