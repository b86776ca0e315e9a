package netpol

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func pod(ns, name, node, ip string, l map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
}

func nsObj(name string, l map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func policy(ns, name string, sel map[string]string, spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
	spec.PodSelector = metav1.LabelSelector{MatchLabels: sel}
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func port(p intstr.IntOrString, proto corev1.Protocol, end ...int32) networkingv1.NetworkPolicyPort {
	np := networkingv1.NetworkPolicyPort{Port: &p, Protocol: &proto}
	if len(end) > 0 {
		np.EndPort = &end[0]
	}
	return np
}

// render is a compact view of the rules of each pod.
func render(rs []PodRules) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s in=%v%v out=%v%v\n", r.Name, r.IngressIsolated, r.Ingress, r.EgressIsolated, r.Egress)
	}
	return b.String()
}

func TestCompute(t *testing.T) {
	pods := []*corev1.Pod{
		pod("default", "web", "n1", "10.42.1.2", map[string]string{"app": "web"}, corev1.ContainerPort{Name: "http", ContainerPort: 8080}),
		pod("default", "client", "n1", "10.42.1.3", map[string]string{"role": "client"}),
		pod("default", "other", "n2", "10.42.2.2", map[string]string{"role": "client"}),
		pod("prod", "api", "n2", "10.42.2.3", map[string]string{"app": "api"}, corev1.ContainerPort{Name: "grpc", ContainerPort: 9000, Protocol: corev1.ProtocolUDP}),
		pod("default", "pending", "n1", "", map[string]string{"app": "web"}),
	}
	nss := []*corev1.Namespace{nsObj("default", nil), nsObj("prod", map[string]string{"env": "prod"})}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	cases := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		want     string
	}{
		{"no policy: nothing isolated", nil, ""},
		{"deny all ingress", []*networkingv1.NetworkPolicy{policy("default", "deny", nil, networkingv1.NetworkPolicySpec{})},
			"web in=true[] out=false[]\nclient in=true[] out=false[]\n"},
		{"other namespace's policy does not apply", []*networkingv1.NetworkPolicy{policy("prod", "deny", nil, networkingv1.NetworkPolicySpec{})}, ""},
		{"allow clients by pod label on a named port", []*networkingv1.NetworkPolicy{policy("default", "web", map[string]string{"app": "web"}, networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}}},
				Ports: []networkingv1.NetworkPolicyPort{port(intstr.FromString("http"), tcp), port(intstr.FromString("nope"), tcp)},
			}}})},
			"web in=true[10.42.1.3/32,10.42.2.2/32 ports tcp/8080] out=false[]\n"},
		{"namespace selector and ipBlock with except, port range", []*networkingv1.NetworkPolicy{policy("default", "web", map[string]string{"app": "web"}, networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{
					{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}},
					{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.0.0/24", Except: []string{"192.168.0.0/25", "192.168.0.192/26"}}},
				},
				Ports: []networkingv1.NetworkPolicyPort{port(intstr.FromInt32(8000), tcp, 8100)},
			}}})},
			"web in=true[10.42.2.3/32,192.168.0.128/26 ports tcp/8000-8100] out=false[]\n"},
		{"egress only, to a named port of the peers", []*networkingv1.NetworkPolicy{policy("default", "out", map[string]string{"role": "client"}, networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
				Ports: []networkingv1.NetworkPolicyPort{port(intstr.FromString("grpc"), udp)},
			}}})},
			"client in=false[] out=true[10.42.2.3/32 ports udp/9000]\n"},
		{"allow all ingress rule", []*networkingv1.NetworkPolicy{policy("default", "all", map[string]string{"app": "web"}, networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{}}})},
			"web in=true[any ports any] out=false[]\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := render(Compute("n1", c.policies, pods, nss)); got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

func TestIPBlockSubtract(t *testing.T) {
	got := ipBlock(&networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}})
	if len(got) != 8 {
		t.Fatalf("%v", got)
	}
	for _, p := range got {
		if p.Contains(mustAddr("10.1.2.3")) {
			t.Errorf("%s contains an excepted address", p)
		}
	}
	if !got[0].Contains(mustAddr("10.0.0.1")) {
		t.Errorf("%v lacks 10.0.0.1", got)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
