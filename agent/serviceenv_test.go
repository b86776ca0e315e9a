package agent

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A container gets the variables of the Services of its namespace
// (conformance "should contain environment variables for services"),
// none of them with enableServiceLinks: false.
func TestServiceLinkEnv(t *testing.T) {
	h := newHarness(t)
	_, err := h.cs.CoreV1().Services("default").Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "fooservice"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.43.0.50", Ports: []corev1.ServicePort{
			{Name: "http", Port: 8765, Protocol: corev1.ProtocolTCP},
			{Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.createPod(pod("links", corev1.RestartPolicyAlways, ctr("c")))
	h.waitPod("links", "running", phaseIs(corev1.PodRunning))
	got := map[string]string{}
	for _, kv := range h.containerOf("c").Config.Envs {
		got[kv.Key] = string(kv.Value)
	}
	want := map[string]string{
		"FOOSERVICE_SERVICE_HOST":         "10.43.0.50",
		"FOOSERVICE_SERVICE_PORT":         "8765",
		"FOOSERVICE_SERVICE_PORT_HTTP":    "8765",
		"FOOSERVICE_SERVICE_PORT_DNS_UDP": "53",
		"FOOSERVICE_PORT":                 "tcp://10.43.0.50:8765",
		"FOOSERVICE_PORT_8765_TCP":        "tcp://10.43.0.50:8765",
		"FOOSERVICE_PORT_8765_TCP_PROTO":  "tcp",
		"FOOSERVICE_PORT_8765_TCP_PORT":   "8765",
		"FOOSERVICE_PORT_8765_TCP_ADDR":   "10.43.0.50",
		"FOOSERVICE_PORT_53_UDP":          "udp://10.43.0.50:53",
		"FOOSERVICE_PORT_53_UDP_PROTO":    "udp",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}

	off := false
	p := pod("nolinks", corev1.RestartPolicyAlways, ctr("d"))
	p.Spec.EnableServiceLinks = &off
	h.createPod(p)
	h.waitPod("nolinks", "running", phaseIs(corev1.PodRunning))
	for _, kv := range h.containerOf("d").Config.Envs {
		if kv.Key == "FOOSERVICE_SERVICE_HOST" {
			t.Errorf("enableServiceLinks: false, yet %s=%s", kv.Key, kv.Value)
		}
	}
}
