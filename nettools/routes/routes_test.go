package routes

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type corev1Node = corev1.Node

func newNode(name, cidr, ip, mac string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	}
	if mac != "" {
		n.Annotations[AnnotationVTEPMAC] = mac
		n.Annotations[AnnotationVTEPIP] = ip
	}
	return n
}

func TestParseBackend(t *testing.T) {
	for in, want := range map[string]Backend{"": VXLAN, "vxlan": VXLAN, "host-gw": HostGW} {
		if got, err := ParseBackend(in); err != nil || got != want {
			t.Errorf("ParseBackend(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseBackend("wireguard"); err == nil {
		t.Error("wireguard accepted")
	}
}

func TestVTEPMACStable(t *testing.T) {
	a, b := VTEPMAC("node-1"), VTEPMAC("node-1")
	if a.String() != b.String() || a.String() == VTEPMAC("node-2").String() {
		t.Errorf("MACs %s %s %s", a, b, VTEPMAC("node-2"))
	}
	if a[0]&1 != 0 || a[0]&2 == 0 {
		t.Errorf("%s is not a locally administered unicast address", a)
	}
}

func TestRoutingChanged(t *testing.T) {
	base := newNode("a", "10.42.1.0/24", "192.0.2.1", "02:00:00:00:00:01")
	hb := base.DeepCopy()
	hb.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if routingChanged(base, hb) {
		t.Error("a heartbeat counts as a routing change")
	}
	for name, mod := range map[string]func(*corev1.Node){
		"podCIDR": func(n *corev1.Node) { n.Spec.PodCIDR = "10.42.2.0/24" },
		"address": func(n *corev1.Node) { n.Status.Addresses[1].Address = "192.0.2.9" },
		"vtep":    func(n *corev1.Node) { n.Annotations[AnnotationVTEPMAC] = "02:00:00:00:00:09" },
	} {
		n := base.DeepCopy()
		mod(n)
		if !routingChanged(base, n) {
			t.Errorf("%s change not seen", name)
		}
	}
}
