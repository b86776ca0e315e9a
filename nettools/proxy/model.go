// Package proxy is Skiff's service proxy (kube-proxy's job), run by every
// agent: it watches Services and EndpointSlices and makes each Service's
// cluster IP and node ports lead to its ready endpoints, in one of two
// modes: nftables (DNAT rules in a Skiff-owned table, replaced atomically
// on every change) or userspace (the agent accepts on the cluster IP,
// held on the node's loopback, and forwards). See docs/services.md.
package proxy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Model is what the proxy programs: every service port with a cluster IP,
// and its ready endpoints. It is a pure function of the Services, the
// EndpointSlices and the node (Build), so it is tested without a kernel.
type Model struct {
	Ports []ServicePort // sorted by namespace, Service name, then ID
	// HostPorts: the node's pods' hostPort mappings (HostPortsOf);
	// nftables mode only.
	HostPorts []HostPort
}

// ServicePort is one port of one Service.
type ServicePort struct {
	Namespace, Service, PortName string
	Protocol                     corev1.Protocol // TCP or UDP
	ClusterIP                    netip.Addr
	Port                         uint16
	NodePort                     uint16 // 0: none
	// LoadBalancerIPs: a LoadBalancer Service's status.loadBalancer
	// addresses (the pool's node addresses, package servicelb); the port
	// answers on them as node port traffic does.
	LoadBalancerIPs []netip.Addr
	// AffinitySeconds > 0: sessionAffinity ClientIP with this timeout.
	AffinitySeconds int32
	// InternalLocal and ExternalLocal: internalTrafficPolicy and
	// externalTrafficPolicy Local.
	InternalLocal, ExternalLocal bool
	// Endpoints are the ready endpoints, sorted, without duplicates.
	Endpoints []Endpoint
}

// Endpoint is a ready endpoint of a service port.
type Endpoint struct {
	IP   netip.Addr
	Port uint16
	// Local: on this node (its NodeName, or an address of the node's pod
	// CIDR).
	Local bool
	// Masquerade: traffic to it is masqueraded (rules.go): local endpoints
	// (replies on the node's bridge would skip the reverse NAT) and
	// endpoints of no node (the masters behind the kubernetes Service,
	// addresses outside the pod network that need not route back to pods).
	Masquerade bool
}

func (e Endpoint) String() string { return netip.AddrPortFrom(e.IP, e.Port).String() }

// ID names the service port: namespace/name:port (the port's name, or its
// number when unnamed) and protocol.
func (p *ServicePort) ID() string {
	n := p.PortName
	if n == "" {
		n = fmt.Sprint(p.Port)
	}
	return fmt.Sprintf("%s/%s:%s/%s", p.Namespace, p.Service, n, strings.ToLower(string(p.Protocol)))
}

// ClusterEndpoints are the endpoints cluster IP traffic goes to (only the
// local ones with internalTrafficPolicy Local).
func (p *ServicePort) ClusterEndpoints() []Endpoint {
	if !p.InternalLocal {
		return p.Endpoints
	}
	return localOnly(p.Endpoints)
}

// ExternalEndpoints are the endpoints node port traffic goes to (only the
// local ones with externalTrafficPolicy Local).
func (p *ServicePort) ExternalEndpoints() []Endpoint {
	if !p.ExternalLocal {
		return p.Endpoints
	}
	return localOnly(p.Endpoints)
}

func localOnly(eps []Endpoint) []Endpoint {
	var out []Endpoint
	for _, e := range eps {
		if e.Local {
			out = append(out, e)
		}
	}
	return out
}

// Node is what Build needs to know about the node it runs on.
type Node struct {
	Name string
	// PodCIDR is the node's pod address range (invalid: unknown).
	PodCIDR netip.Prefix
}

// Build makes the model. Services without a cluster IP (headless,
// ExternalName), non-IPv4 addresses and SCTP ports are left out; an
// endpoint counts when its ready condition is true or unset.
func Build(services []*corev1.Service, slices []*discoveryv1.EndpointSlice, node Node) *Model {
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range slices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		bySvc[s.Namespace+"/"+name] = append(bySvc[s.Namespace+"/"+name], s)
	}
	m := &Model{}
	for _, svc := range services {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil || !ip.Is4() {
			continue
		}
		var affinity int32
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			affinity = corev1.DefaultClientIPServiceAffinitySeconds
			if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				affinity = *c.ClientIP.TimeoutSeconds
			}
		}
		for _, p := range svc.Spec.Ports {
			if p.Protocol != corev1.ProtocolTCP && p.Protocol != corev1.ProtocolUDP {
				continue
			}
			sp := ServicePort{
				Namespace: svc.Namespace, Service: svc.Name, PortName: p.Name, Protocol: p.Protocol,
				ClusterIP: ip, Port: uint16(p.Port), AffinitySeconds: affinity,
				InternalLocal: svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal,
				ExternalLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
			}
			if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				sp.NodePort = uint16(p.NodePort)
			}
			if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				for _, in := range svc.Status.LoadBalancer.Ingress {
					if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
						sp.LoadBalancerIPs = append(sp.LoadBalancerIPs, a)
					}
				}
			}
			sp.Endpoints = endpointsFor(bySvc[svc.Namespace+"/"+svc.Name], p, node)
			m.Ports = append(m.Ports, sp)
		}
	}
	sort.Slice(m.Ports, func(i, j int) bool {
		a, b := m.Ports[i], m.Ports[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.ID() < b.ID()
	})
	return m
}

// endpointsFor collects the ready endpoints of service port p. A slice
// lists the ports its endpoints serve (named target ports are resolved per
// pod by the EndpointSlice controller, which groups pods by the number),
// matched to the service port by name and protocol.
func endpointsFor(slices []*discoveryv1.EndpointSlice, p corev1.ServicePort, node Node) []Endpoint {
	seen := map[Endpoint]bool{}
	var out []Endpoint
	for _, s := range slices {
		var port uint16
		for _, sp := range s.Ports {
			name := ""
			if sp.Name != nil {
				name = *sp.Name
			}
			proto := corev1.ProtocolTCP
			if sp.Protocol != nil {
				proto = *sp.Protocol
			}
			if name == p.Name && proto == p.Protocol && sp.Port != nil {
				port = uint16(*sp.Port)
				break
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			local := ep.NodeName != nil && *ep.NodeName == node.Name
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || !ip.Is4() {
					continue
				}
				e := Endpoint{IP: ip, Port: port, Local: local || (node.PodCIDR.IsValid() && node.PodCIDR.Contains(ip))}
				e.Masquerade = e.Local || ep.NodeName == nil
				if !seen[e] {
					seen[e] = true
					out = append(out, e)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].IP.Compare(out[j].IP); c != 0 {
			return c < 0
		}
		return out[i].Port < out[j].Port
	})
	return out
}
