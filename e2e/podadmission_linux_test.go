package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRuntimeClassAndSysctlsOnNode: with a real agent (libcontainer), a
// pod naming a RuntimeClass runs with the one runtime the agent has (the
// class's handler is not asked for), and a pod asking for an unsafe
// sysctl fails with reason SysctlForbidden while one with safe sysctls
// runs (conformance: the Sysctls and RuntimeClass node tests).
func TestRuntimeClassAndSysctlsOnNode(t *testing.T) {
	n := startRealNode(t)
	ctx := context.Background()
	if _, err := n.cs.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "sandboxed"},
		Handler: "test-handler"}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rc := bbPod("with-class", corev1.RestartPolicyNever, "echo ok")
	name := "sandboxed"
	rc.Spec.RuntimeClassName = &name
	n.create(rc)
	n.waitPod("with-class", "succeeded", phase(corev1.PodSucceeded))

	// Pod Security's baseline (enforced by default) forbids unsafe
	// sysctls; the conformance namespaces are privileged.
	if out, err := n.kubectl("label", "namespace", "default", "pod-security.kubernetes.io/enforce=privileged", "--overwrite"); err != nil {
		t.Fatalf("label namespace: %v: %s", err, out)
	}
	unsafe := bbPod("unsafe-sysctl", corev1.RestartPolicyNever, "echo ok")
	unsafe.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.msgmax", Value: "10000000000"}}}
	n.create(unsafe)
	p := n.waitPod("unsafe-sysctl", "rejected", func(p *corev1.Pod) error {
		if p.Status.Phase != corev1.PodFailed || p.Status.Reason != "SysctlForbidden" {
			return fmt.Errorf("phase %s reason %q", p.Status.Phase, p.Status.Reason)
		}
		return nil
	})
	if !strings.Contains(p.Status.Message, "kernel.msgmax") {
		t.Errorf("message %q", p.Status.Message)
	}

	safe := bbPod("safe-sysctl", corev1.RestartPolicyNever, "cat /proc/sys/kernel/shm_rmid_forced")
	safe.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}}}
	n.create(safe)
	n.waitPod("safe-sysctl", "succeeded", phase(corev1.PodSucceeded))
	if out, err := n.kubectl("logs", "safe-sysctl"); err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("kernel.shm_rmid_forced in the pod: %v: %q", err, out)
	}
}
