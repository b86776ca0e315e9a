package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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

// TestHostPortConflictRejected: a pod bound to the node directly whose
// hostPort collides with a running pod's fails with kube's NodePorts
// rejection (the kubelet's admission); the StatefulSet controller
// replaces it until the port is free, and then its pod runs (conformance
// "StatefulSet ... Should recreate evicted statefulset").
func TestHostPortConflictRejected(t *testing.T) {
	n := startRealNode(t)
	ctx := context.Background()
	// Pod Security's baseline forbids host ports; the conformance
	// namespaces are privileged.
	if out, err := n.kubectl("label", "namespace", "default", "pod-security.kubernetes.io/enforce=privileged", "--overwrite"); err != nil {
		t.Fatalf("label namespace: %v: %s", err, out)
	}
	port := []corev1.ContainerPort{{ContainerPort: 21017, HostPort: 21017}}
	holder := bbPod("test-pod", corev1.RestartPolicyAlways, "sleep 3600")
	holder.Spec.Containers[0].Ports = port
	n.create(holder)
	n.waitPod("test-pod", "running", phase(corev1.PodRunning))

	tmpl := bbPod("", corev1.RestartPolicyAlways, "sleep 3600")
	tmpl.Spec.Containers[0].Ports = port
	one := int32(1)
	ss := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "ss", Namespace: "default"},
		Spec: appsv1.StatefulSetSpec{Replicas: &one, ServiceName: "test",
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "ss"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "ss"}}, Spec: tmpl.Spec}}}
	if _, err := n.cs.AppsV1().StatefulSets("default").Create(ctx, ss, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n.cs.AppsV1().StatefulSets("default").Delete(context.Background(), "ss", metav1.DeleteOptions{})
	})

	// ss-0 fails with the rejection, and a new ss-0 (another UID) replaces it.
	var failedUID types.UID
	if err := testutil.Poll(90*time.Second, func() error {
		p, err := n.cs.CoreV1().Pods("default").Get(ctx, "ss-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if failedUID == "" {
			if p.Status.Phase != corev1.PodFailed {
				return fmt.Errorf("ss-0 phase %q reason %q", p.Status.Phase, p.Status.Reason)
			}
			want := "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
			if p.Status.Reason != "NodePorts" || p.Status.Message != want {
				t.Fatalf("ss-0 failed with reason %q message %q", p.Status.Reason, p.Status.Message)
			}
			failedUID = p.UID
			return fmt.Errorf("ss-0 %s failed, waiting for its replacement", p.UID)
		}
		if p.UID == failedUID {
			return fmt.Errorf("ss-0 %s not replaced yet", p.UID)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n--- agent log ---\n%s", err, n.agent.LogTail(30))
	}

	// The holder keeps running; once it is gone, ss-0 runs.
	n.waitPod("test-pod", "still running", phase(corev1.PodRunning))
	n.deletePod("test-pod")
	n.waitPod("ss-0", "running after the port was freed", phase(corev1.PodRunning))
}
