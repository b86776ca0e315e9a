package proxy

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func ptr[T any](v T) *T { return &v }

func testService(name, ip string, typ corev1.ServiceType, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: typ, ClusterIP: ip, Ports: ports}}
}

type testEP struct {
	ip, node string
	ready    *bool
}

func testSlice(svc, name string, ports map[string]int32, eps ...testEP) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(n), Port: ptr(p), Protocol: ptr(corev1.ProtocolTCP)})
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.node != "" {
			ep.NodeName = ptr(e.node)
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

func TestBuild(t *testing.T) {
	web := testService("web", "10.43.0.20", corev1.ServiceTypeNodePort,
		corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http"), NodePort: 30080})
	web.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	web.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	headless := testService("h", corev1.ClusterIPNone, corev1.ServiceTypeClusterIP, corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "a.b"}}
	empty := testService("empty", "10.43.0.21", corev1.ServiceTypeClusterIP, corev1.ServicePort{Port: 53, Protocol: corev1.ProtocolUDP})
	slices := []*discoveryv1.EndpointSlice{
		// The named target port resolves to 8080 for some pods, 9090 for others.
		testSlice("web", "web-a", map[string]int32{"http": 8080},
			testEP{ip: "10.42.0.5", node: "n1"}, testEP{ip: "10.42.1.5", node: "n2", ready: ptr(true)}, testEP{ip: "10.42.1.6", node: "n2", ready: ptr(false)}),
		testSlice("web", "web-b", map[string]int32{"http": 9090}, testEP{ip: "10.42.2.7", node: "n3"}),
		testSlice("web", "web-dup", map[string]int32{"http": 8080}, testEP{ip: "10.42.0.5", node: "n1"}),
	}
	m := Build([]*corev1.Service{web, headless, ext, empty}, slices, Node{Name: "n1"})
	if len(m.Ports) != 2 {
		t.Fatalf("ports: %+v", m.Ports)
	}
	e, w := m.Ports[0], m.Ports[1]
	if e.ID() != "default/empty:53/udp" || len(e.Endpoints) != 0 {
		t.Fatalf("empty: %+v", e)
	}
	if w.ID() != "default/web:http/tcp" || w.NodePort != 30080 || w.AffinitySeconds != 10800 || !w.ExternalLocal {
		t.Fatalf("web: %+v", w)
	}
	var got []string
	for _, ep := range w.Endpoints {
		got = append(got, ep.String())
	}
	if strings.Join(got, ",") != "10.42.0.5:8080,10.42.1.5:8080,10.42.2.7:9090" {
		t.Fatalf("endpoints (ready, per-endpoint ports, no duplicates): %v", got)
	}
	if !w.Endpoints[0].Local || w.Endpoints[1].Local {
		t.Fatalf("locality: %+v", w.Endpoints)
	}
	if l := w.ExternalEndpoints(); len(l) != 1 || l[0].IP != netip.MustParseAddr("10.42.0.5") {
		t.Fatalf("external (Local): %+v", l)
	}
	if len(w.ClusterEndpoints()) != 3 {
		t.Fatalf("cluster endpoints: %+v", w.ClusterEndpoints())
	}
}

func TestRules(t *testing.T) {
	svc := testService("web", "10.43.0.20", corev1.ServiceTypeNodePort,
		corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30080})
	empty := testService("empty", "10.43.0.21", corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 53, Protocol: corev1.ProtocolUDP, NodePort: 30053})
	m := Build([]*corev1.Service{svc, empty}, []*discoveryv1.EndpointSlice{
		testSlice("web", "a", map[string]int32{"http": 8080}, testEP{ip: "10.42.0.5", node: "n1"}, testEP{ip: "10.42.1.5", node: "n2"}),
	}, Node{Name: "n1"})
	text := Rules(m, BalanceRoundRobin).String()
	for _, want := range []string{
		`ip daddr 10.43.0.20 meta l4proto tcp th dport 80 goto "svc-default/web:http/tcp"`,
		`numgen inc mod 2 vmap { 0 : goto "ep-default/web:http/tcp-10.42.0.5:8080", 1 : goto "ep-default/web:http/tcp-10.42.1.5:8080" }`,
		// Local endpoint: masqueraded (same-bridge replies); remote: not.
		"meta mark set meta mark | 0x4000 dnat to 10.42.0.5:8080",
		"\t\tdnat to 10.42.1.5:8080",
		// Node port, externalTrafficPolicy Cluster: marked.
		`meta l4proto tcp th dport 30080 goto "ext-default/web:http/tcp"`,
		// No endpoints: rejected, both the cluster IP and the node port.
		"ip daddr 10.43.0.21 meta l4proto udp th dport 53 reject with icmp type port-unreachable",
		"fib daddr type local meta l4proto udp th dport 30053 reject with icmp type port-unreachable",
		"meta mark & 0x4000 != 0 masquerade",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rules lack %q:\n%s", want, text)
		}
	}
	// Affinity: one timed set per endpoint, checked before the pick.
	svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
	m = Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{
		testSlice("web", "a", map[string]int32{"http": 8080}, testEP{ip: "10.42.0.5", node: "n1"}),
	}, Node{Name: "n1"})
	rs := Rules(m, BalanceRandom)
	if len(rs.Sets) != 1 || rs.Sets[0].Timeout != 60 {
		t.Fatalf("sets: %+v", rs.Sets)
	}
	text = rs.String()
	for _, want := range []string{
		`ip saddr @"aff-default/web:http/tcp-10.42.0.5:8080" goto "ep-default/web:http/tcp-10.42.0.5:8080"`,
		`update @"aff-default/web:http/tcp-10.42.0.5:8080" { ip saddr }`,
		"numgen random mod 1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rules lack %q:\n%s", want, text)
		}
	}
}

func TestStaleUDP(t *testing.T) {
	svc := testService("dns", "10.43.0.10", corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 53, Protocol: corev1.ProtocolUDP, NodePort: 30053})
	slice := func(ips ...string) []*discoveryv1.EndpointSlice {
		var eps []testEP
		for _, ip := range ips {
			eps = append(eps, testEP{ip: ip, node: "n1"})
		}
		s := testSlice("dns", "dns", map[string]int32{"": 5353}, eps...)
		s.Ports[0].Protocol = ptr(corev1.ProtocolUDP)
		return []*discoveryv1.EndpointSlice{s}
	}
	none := Build([]*corev1.Service{svc}, nil, Node{Name: "n1"})
	two := Build([]*corev1.Service{svc}, slice("10.42.0.5", "10.42.0.6"), Node{Name: "n1"})
	one := Build([]*corev1.Service{svc}, slice("10.42.0.6"), Node{Name: "n1"})
	if got := StaleUDP(nil, two); len(got) != 0 {
		t.Fatalf("first sync: %v", got)
	}
	vip := netip.MustParseAddr("10.43.0.10")
	got := StaleUDP(none, two)
	if len(got) != 2 || got[0] != (StaleFlow{Dst: vip, DstPort: 53}) || got[1] != (StaleFlow{DstPort: 30053}) {
		t.Fatalf("endpoints appear: %v", got)
	}
	gone := netip.MustParseAddr("10.42.0.5")
	got = StaleUDP(two, one)
	if len(got) != 2 || got[0] != (StaleFlow{Dst: vip, DstPort: 53, Endpoint: gone}) || got[1] != (StaleFlow{DstPort: 30053, Endpoint: gone}) {
		t.Fatalf("endpoint removed: %v", got)
	}
	if got := StaleUDP(one, one); len(got) != 0 {
		t.Fatalf("no change: %v", got)
	}
}

// TestLocalnetGuard: whatever the model, the table drops packets to
// 127.0.0.0/8 that arrive off lo and were not DNATed: the pod bridge has
// route_localnet (for endpoints on the node's loopback), and nothing else
// may use it.
func TestLocalnetGuard(t *testing.T) {
	for _, m := range []*Model{{}, {Ports: []ServicePort{{ClusterIP: netip.MustParseAddr("10.43.0.1"), Port: 443, Protocol: "TCP",
		Endpoints: []Endpoint{{IP: netip.MustParseAddr("127.0.0.1"), Port: 6443, Masquerade: true}}}}}} {
		text := Rules(m, BalanceRandom).String()
		want := "type filter hook input priority 0; policy accept;\n\t\tiifname != \"lo\" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop"
		if !strings.Contains(text, want) {
			t.Errorf("no localnet guard in\n%s", text)
		}
	}
}

// TestLoadBalancerRules: a LoadBalancer Service's status addresses lead to
// its external endpoints like its node port (kube-proxy's rule); with no
// endpoints they reject; node port traffic from the loopback is
// masqueraded even with externalTrafficPolicy Local.
func TestLoadBalancerRules(t *testing.T) {
	svc := testService("lb", "10.43.0.20", corev1.ServiceTypeLoadBalancer, corev1.ServicePort{Name: "http", Port: 8081, NodePort: 30081, Protocol: corev1.ProtocolTCP})
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}, {IP: "192.0.2.2"}}
	slice := testSlice("lb", "lb-1", map[string]int32{"http": 8080}, testEP{ip: "10.42.0.5", node: "n1"})
	m := Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{slice}, Node{Name: "n1"})
	if got := m.Ports[0].LoadBalancerIPs; len(got) != 2 || got[0] != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("load balancer IPs %v", got)
	}
	text := Rules(m, BalanceRandom).String()
	for _, want := range []string{
		`ip daddr 192.0.2.1 meta l4proto tcp th dport 8081 goto "ext-default/lb:http/tcp"`,
		`ip daddr 192.0.2.2 meta l4proto tcp th dport 8081 goto "ext-default/lb:http/tcp"`,
		`ip saddr 127.0.0.0/8 meta mark set meta mark | 0x4000`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
	m = Build([]*corev1.Service{svc}, nil, Node{Name: "n1"})
	if text := Rules(m, BalanceRandom).String(); !strings.Contains(text, "ip daddr 192.0.2.1 meta l4proto tcp th dport 8081 reject with tcp reset") {
		t.Errorf("no reject for the load balancer address in\n%s", text)
	}
}
