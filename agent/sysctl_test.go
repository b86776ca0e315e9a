package agent

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestSysctlForbidden: as the kubelet (conformance "should not launch
// unsafe, but not explicitly enabled sysctls on the node"), a pod asking
// for a sysctl outside the safe set fails with reason SysctlForbidden and
// no container is started; a pod with safe sysctls runs.
func TestSysctlForbidden(t *testing.T) {
	h := newHarness(t)
	bad := pod("unsafe", corev1.RestartPolicyNever, ctr("main", "exit=0"))
	bad.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
		{Name: "kernel.shm_rmid_forced", Value: "1"}, {Name: "kernel.msgmax", Value: "10000000000"}}}
	h.createPod(bad)
	got := h.waitPod("unsafe", "rejected", func(p *corev1.Pod) error {
		if p.Status.Phase != corev1.PodFailed || p.Status.Reason != "SysctlForbidden" {
			return fmt.Errorf("phase %s reason %q", p.Status.Phase, p.Status.Reason)
		}
		return nil
	})
	if !strings.Contains(got.Status.Message, `forbidden sysctl: "kernel.msgmax" not allowlisted`) {
		t.Errorf("message %q", got.Status.Message)
	}
	h.waitEvent("unsafe", "SysctlForbidden")
	if n := h.rt.Calls("RunPodSandbox"); n != 0 {
		t.Errorf("a rejected pod got %d sandboxes", n)
	}

	good := pod("safe", corev1.RestartPolicyNever, ctr("main", "exit=0"))
	good.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
		{Name: "net/ipv4/ip_local_port_range", Value: "1024 65535"}, {Name: "kernel.shm_rmid_forced", Value: "1"}}}
	h.createPod(good)
	h.waitPod("safe", "succeeded", phaseIs(corev1.PodSucceeded))
}

func TestNormalizeSysctl(t *testing.T) {
	for in, want := range map[string]string{
		"net.ipv4.tcp_rmem":    "net.ipv4.tcp_rmem",
		"net/ipv4/tcp_rmem":    "net.ipv4.tcp_rmem",
		"net/ipv4/conf/eth0.1": "net.ipv4.conf.eth0/1",
		"kernel":               "kernel",
	} {
		if got := normalizeSysctl(in); got != want {
			t.Errorf("normalizeSysctl(%q) = %q, want %q", in, got, want)
		}
	}
}
