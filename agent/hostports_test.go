package agent

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func portPod(uid string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: ports}}}}
}

// The NodePorts rules: same protocol and port collide when either host IP
// is empty/0.0.0.0 or both are equal; a freed port can be taken again.
func TestAdmitHostPorts(t *testing.T) {
	p := &podWorkers{}
	tcp := func(ip string, port int32) corev1.ContainerPort {
		return corev1.ContainerPort{ContainerPort: 80, HostPort: port, HostIP: ip}
	}
	if _, ok := p.admitHostPorts(portPod("a", tcp("", 8080))); !ok {
		t.Fatal("first pod refused")
	}
	if _, ok := p.admitHostPorts(portPod("a", tcp("", 8080))); !ok {
		t.Fatal("an admitted pod is refused on its next sync")
	}
	for _, c := range []struct {
		port corev1.ContainerPort
		ok   bool
	}{
		{tcp("", 8080), false},
		{tcp("127.0.0.2", 8080), false},
		{tcp("", 8081), true},
		{corev1.ContainerPort{HostPort: 8080, Protocol: corev1.ProtocolUDP}, true},
		{corev1.ContainerPort{ContainerPort: 8080}, true}, // no host port
	} {
		uid := "b-" + string(c.port.Protocol) + c.port.HostIP
		_, ok := p.admitHostPorts(portPod(uid, c.port))
		if ok != c.ok {
			t.Errorf("%+v: admitted %v, want %v", c.port, ok, c.ok)
		}
		p.releaseHostPorts(types.UID(uid))
	}
	q := &podWorkers{}
	q.admitHostPorts(portPod("x", tcp("127.0.0.2", 9000)))
	if _, ok := q.admitHostPorts(portPod("y", tcp("127.0.0.3", 9000))); !ok {
		t.Error("different host IPs collided")
	}
	if _, ok := q.admitHostPorts(portPod("z", tcp("0.0.0.0", 9000))); ok {
		t.Error("0.0.0.0 did not collide with a specific IP")
	}
	p.releaseHostPorts("a")
	if _, ok := p.admitHostPorts(portPod("c", tcp("", 8080))); !ok {
		t.Error("port not freed")
	}
}
