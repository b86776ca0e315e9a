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
