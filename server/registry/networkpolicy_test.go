package registry

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestNetworkPolicyDefaultsAndValidation(t *testing.T) {
	k := mustKind(t, New(), "networking.k8s.io", "networkpolicies")
	http := intstr.FromString("http")
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &http}},
			}},
			Egress: []networkingv1.NetworkPolicyEgressRule{{}},
		}}
	k.PrepareForCreate(np)
	if p := np.Spec.Ingress[0].Ports[0].Protocol; p == nil || *p != corev1.ProtocolTCP {
		t.Errorf("port protocol not defaulted to TCP: %v", p)
	}
	if got := np.Spec.PolicyTypes; len(got) != 2 || got[0] != networkingv1.PolicyTypeIngress || got[1] != networkingv1.PolicyTypeEgress {
		t.Errorf("policyTypes defaulted to %v", got)
	}
	if errs := k.Validate(np); len(errs) != 0 {
		t.Fatalf("valid policy: %v", errs)
	}
	if cells := k.Cells(np, time.Now()); cells[1] != "app=web" {
		t.Errorf("cells %v", cells)
	}

	bad := np.DeepCopy()
	end := int32(90)
	p80 := intstr.FromInt32(80)
	icmp := corev1.Protocol("ICMP")
	bad.Spec.PolicyTypes = []networkingv1.PolicyType{"Sideways"}
	bad.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{
		{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"11.0.0.0/16", "10.0.0.0/8"}}},
		{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}, PodSelector: &metav1.LabelSelector{}},
		{},
	}
	bad.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{{Port: &http, EndPort: &end}, {Port: &p80, EndPort: func() *int32 { v := int32(70); return &v }()}, {Protocol: &icmp}}
	assertFields(t, k.Validate(bad),
		"spec.ingress[0].ports[0].endPort", "spec.ingress[0].ports[1].endPort", "spec.ingress[0].ports[2].protocol",
		"spec.ingress[0].from[0].ipBlock.except[0]", "spec.ingress[0].from[0].ipBlock.except[1]",
		"spec.ingress[0].from[1]", "spec.ingress[0].from[2]", "spec.policyTypes[0]")
}
