package dns

import (
	"net/netip"
	"sort"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// zone is an immutable index of the cluster's names, rebuilt on every
// change of the source and swapped in atomically: queries never lock.
// Names are lower-case and fully qualified.
type zone struct {
	domain string // "cluster.local."
	serial uint32 // SOA serial: when the index was built
	// records by owner name.
	names map[string]*node
	// exists holds every name that has records or descendants (empty
	// non-terminals answer NODATA, not NXDOMAIN).
	exists map[string]bool
	// ptr maps reverse names (in-addr.arpa, ip6.arpa) to targets.
	ptr map[string][]string
}

type node struct {
	addrs []netip.Addr // A and AAAA
	cname string       // ExternalName target
	srv   []srvTarget
}

// srvTarget is one SRV record: the port and the name it points at.
type srvTarget struct {
	port   uint16
	target string
}

func (n *node) add(a netip.Addr) {
	for _, x := range n.addrs {
		if x == a {
			return
		}
	}
	n.addrs = append(n.addrs, a)
}

// buildZone indexes services and slices under domain.
func buildZone(domain string, svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) *zone {
	size := len(svcs)
	for _, s := range slices {
		size += len(s.Endpoints)
	}
	z := &zone{domain: domain, names: make(map[string]*node, 2*size), exists: make(map[string]bool, 2*size),
		ptr: make(map[string][]string, size)}
	// Fixed names: the zone itself, svc and pod subtrees.
	z.mark(domain)
	z.mark("svc." + domain)
	z.mark("pod." + domain)

	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range slices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		k := s.Namespace + "/" + name
		bySvc[k] = append(bySvc[k], s)
	}
	for _, svc := range svcs {
		z.addService(svc, bySvc[svc.Namespace+"/"+svc.Name])
	}
	for _, n := range z.names {
		sort.Slice(n.addrs, func(i, j int) bool { return n.addrs[i].Less(n.addrs[j]) })
		sort.Slice(n.srv, func(i, j int) bool {
			if n.srv[i].port != n.srv[j].port {
				return n.srv[i].port < n.srv[j].port
			}
			return n.srv[i].target < n.srv[j].target
		})
	}
	return z
}

// mark records that name exists, with all its ancestors inside the zone.
func (z *zone) mark(name string) {
	for {
		if z.exists[name] {
			return
		}
		z.exists[name] = true
		if name == z.domain {
			return
		}
		_, parent, ok := strings.Cut(name, ".")
		if !ok || !dns.IsSubDomain(z.domain, parent) {
			return
		}
		name = parent
	}
}

func (z *zone) node(name string) *node {
	n := z.names[name]
	if n == nil {
		n = &node{}
		z.names[name] = n
		z.mark(name)
	}
	return n
}

func (z *zone) addPTR(a netip.Addr, target string) {
	rev, err := dns.ReverseAddr(a.String())
	if err != nil {
		return
	}
	for _, t := range z.ptr[rev] {
		if t == target {
			return
		}
	}
	z.ptr[rev] = append(z.ptr[rev], target)
}

func (z *zone) addService(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) {
	ns, name := strings.ToLower(svc.Namespace), strings.ToLower(svc.Name)
	fqdn := name + "." + ns + ".svc." + z.domain
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		if svc.Spec.ExternalName != "" {
			z.node(fqdn).cname = dns.Fqdn(strings.ToLower(svc.Spec.ExternalName))
		}
		return
	case svc.Spec.ClusterIP == corev1.ClusterIPNone:
		z.addHeadless(svc, fqdn, slices)
		return
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	n := z.node(fqdn)
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			n.add(a)
			z.addPTR(a, fqdn)
		}
	}
	if len(n.addrs) == 0 {
		// A Service without an address yet: the name exists, no data.
		return
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == "" {
			continue
		}
		srvName := "_" + strings.ToLower(p.Name) + "._" + protoLabel(p.Protocol) + "." + fqdn
		z.node(srvName).srv = append(z.node(srvName).srv, srvTarget{port: uint16(p.Port), target: fqdn})
		n.srv = append(n.srv, srvTarget{port: uint16(p.Port), target: fqdn})
	}
}

// addHeadless gives a headless Service one record per ready endpoint
// address, each endpoint a name of its own (its hostname, or its dashed
// address), and SRV records per named port pointing at those names.
func (z *zone) addHeadless(svc *corev1.Service, fqdn string, slices []*discoveryv1.EndpointSlice) {
	n := z.node(fqdn)
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if !ready && !svc.Spec.PublishNotReadyAddresses {
				continue
			}
			for _, ip := range ep.Addresses {
				a, err := netip.ParseAddr(ip)
				if err != nil {
					continue
				}
				label := dashed(a)
				if ep.Hostname != nil && *ep.Hostname != "" {
					label = strings.ToLower(*ep.Hostname)
				}
				epName := label + "." + fqdn
				n.add(a)
				z.node(epName).add(a)
				z.addPTR(a, epName)
				for _, p := range s.Ports {
					if p.Name == nil || *p.Name == "" || p.Port == nil {
						continue
					}
					proto := corev1.ProtocolTCP
					if p.Protocol != nil {
						proto = *p.Protocol
					}
					srvName := "_" + strings.ToLower(*p.Name) + "._" + protoLabel(proto) + "." + fqdn
					t := srvTarget{port: uint16(*p.Port), target: epName}
					sn := z.node(srvName)
					if !hasSRV(sn.srv, t) {
						sn.srv = append(sn.srv, t)
						n.srv = append(n.srv, t)
					}
				}
			}
		}
	}
}

func hasSRV(list []srvTarget, t srvTarget) bool {
	for _, x := range list {
		if x == t {
			return true
		}
	}
	return false
}

func protoLabel(p corev1.Protocol) string {
	if p == "" {
		return "tcp"
	}
	return strings.ToLower(string(p))
}

// dashed is the address as one DNS label: 10-42-0-5, or for IPv6 the
// expanded form with dashes for colons.
func dashed(a netip.Addr) string {
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-")
	}
	return strings.ReplaceAll(a.StringExpanded(), ":", "-")
}

// undashed parses a label made by dashed (or a compressed IPv6 address
// with dashes, as CoreDNS accepts).
func undashed(label string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ".")); err == nil && a.Is4() {
		return a, true
	}
	if a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ":")); err == nil && a.Is6() {
		return a, true
	}
	return netip.Addr{}, false
}

// podAddr answers <dashed-ip>.<namespace>.pod.<domain> (CoreDNS's "pods
// insecure" mode, the Kubernetes default: any well-formed address); false
// when name is not of that shape.
func (z *zone) podAddr(name string) (netip.Addr, bool) {
	rest, ok := strings.CutSuffix(name, ".pod."+z.domain)
	if !ok {
		return netip.Addr{}, false
	}
	labels := strings.Split(rest, ".")
	if len(labels) != 2 {
		return netip.Addr{}, false
	}
	return undashed(labels[0])
}

// isPodNamespace reports whether name is <namespace>.pod.<domain>.
func (z *zone) isPodNamespace(name string) bool {
	rest, ok := strings.CutSuffix(name, ".pod."+z.domain)
	return ok && rest != "" && !strings.Contains(rest, ".")
}
