package proxy

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// TestProxyHostPorts: a pod's hostPort answers on the node's addresses
// (TCP and UDP, from outside, from a pod on the bridge, from the pod
// itself), a hostPort with hostIP 127.0.0.1 answers on the node's loopback
// only, and a deleted pod's port stops answering.
func TestProxyHostPorts(t *testing.T) {
	w := newWorld(t)
	api := apiservertest.NewServer(t, apiservertest.Options{Admission: true})
	cfg := api.RESTConfig()
	cfg.QPS, cfg.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default",
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// As the agent's bridge does for every pod (nettools/bridge_linux.go).
	w.ip("-n", w.ns("N"), "link", "set", "ve", "type", "bridge_slave", "hairpin", "on")
	w.serve("E", "10.42.0.3:8080")
	w.serve("E", "10.42.0.4:8080")
	mkPod := func(name, podIP string, ports ...corev1.ContainerPort) {
		t.Helper()
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Name: "c", Image: "busybox", Ports: ports}}}}
		pod, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Status.Phase = corev1.PodRunning
		pod.Status.PodIP = podIP
		pod.Status.PodIPs = []corev1.PodIP{{IP: podIP}}
		if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkPod("any", "10.42.0.3",
		corev1.ContainerPort{ContainerPort: 8080, HostPort: 9090, Protocol: corev1.ProtocolTCP},
		corev1.ContainerPort{ContainerPort: 8080, HostPort: 9090, Protocol: corev1.ProtocolUDP})
	mkPod("loopback", "10.42.0.4",
		corev1.ContainerPort{ContainerPort: 8080, HostPort: 9091, HostIP: "127.0.0.1", Protocol: corev1.ProtocolTCP})
	startProxy(t, w, cs, ModeNFTables)

	answers := func(from, network, addr, want string) func() (bool, string) {
		return func() (bool, string) {
			got, err := w.get(from, network, addr)
			if err != nil {
				return false, err.Error()
			}
			return got == want, "answered " + got
		}
	}
	eventually(t, "hostPort 9090/tcp from outside the node", answers("X", "tcp4", "192.168.77.1:9090", "10.42.0.3:8080"))
	eventually(t, "hostPort 9090/udp from outside the node", answers("X", "udp4", "192.168.77.1:9090", "10.42.0.3:8080"))
	eventually(t, "hostPort 9090/tcp from a pod on the bridge", answers("C", "tcp4", "10.42.0.1:9090", "10.42.0.3:8080"))
	eventually(t, "hostPort 9090/tcp from the pod itself (hairpin)", answers("E", "tcp4", "192.168.77.1:9090", "10.42.0.3:8080"))
	eventually(t, "hostPort 9091 on hostIP 127.0.0.1 from the node", answers("N", "tcp4", "127.0.0.1:9091", "10.42.0.4:8080"))
	if got, err := w.get("X", "tcp4", "192.168.77.1:9091"); err == nil {
		t.Fatalf("hostPort 9091 (hostIP 127.0.0.1) answered on the node's address: %q", got)
	}

	if err := cs.CoreV1().Pods("default").Delete(ctx, "any", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a deleted pod's hostPort stops answering", func() (bool, string) {
		got, err := w.get("X", "tcp4", "192.168.77.1:9090")
		return err != nil, "still answered " + got
	})
}
