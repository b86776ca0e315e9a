package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/sys/capability"
	"github.com/moby/sys/devices"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestHostLimitedPods: on a host that withholds features from root (this
// machine's root lacks CAP_SYS_RESOURCE, as in many LXC- or Docker-hosted
// edge setups), a Guaranteed pod (requests = limits, oom_score_adj -997)
// runs with the lowest score the host allows, a privileged pod (in a
// namespace labelled privileged) runs and sees the host's devices, and
// the agent reports the degradation once: one warning in its log, the
// RuntimeDegraded Node condition and one Node event.
func TestHostLimitedPods(t *testing.T) {
	n := startRealNode(t)
	ctx := context.Background()
	caps, err := capability.NewPid2(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := caps.Load(); err != nil {
		t.Fatal(err)
	}
	sysResource := caps.Get(capability.EFFECTIVE, capability.CAP_SYS_RESOURCE)

	g := bbPod("guaranteed", corev1.RestartPolicyNever, "cat /proc/self/oom_score_adj")
	rl := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	g.Spec.Containers[0].Resources = corev1.ResourceRequirements{Requests: rl, Limits: rl}
	n.create(g)
	if p := n.waitPod("guaranteed", "succeeded", phase(corev1.PodSucceeded)); p.Status.QOSClass != corev1.PodQOSGuaranteed {
		t.Fatalf("QoS class %s", p.Status.QOSClass)
	}
	out, err := n.kubectl("logs", "guaranteed")
	if err != nil {
		t.Fatalf("logs: %v %s", err, out)
	}
	want := -997
	if !sysResource {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", n.agent.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		own, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		want = max(want, own)
	}
	if strings.TrimSpace(out) != strconv.Itoa(want) {
		t.Fatalf("guaranteed pod's oom_score_adj %q, want %d", out, want)
	}

	// A privileged pod, in a namespace the operator labelled privileged.
	if out, err := n.kubectl("label", "--overwrite", "namespace", "default", "pod-security.kubernetes.io/enforce=privileged"); err != nil {
		t.Fatalf("label: %v %s", err, out)
	}
	host, err := devices.HostDevices()
	if err != nil {
		t.Fatal(err)
	}
	var extra string // a host device that unprivileged containers do not get
	for _, d := range host {
		if !slices.Contains([]string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx"}, d.Path) &&
			strings.Count(d.Path, "/") == 2 {
			extra = d.Path
			break
		}
	}
	yes := true
	p := bbPod("privileged", corev1.RestartPolicyNever, "cat /dev/null && echo null-ok && ls /dev")
	p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &yes}
	n.create(p)
	n.waitPod("privileged", "succeeded", phase(corev1.PodSucceeded))
	out, err = n.kubectl("logs", "privileged")
	if err != nil || !strings.Contains(out, "null-ok\n") || (extra != "" && !strings.Contains(out, strings.TrimPrefix(extra, "/dev/")+"\n")) {
		t.Fatalf("privileged pod (host device %s expected): %v\n%s", extra, err, out)
	}

	if sysResource && caps.Get(capability.BOUNDING, capability.CAP_SYS_RESOURCE) {
		return // nothing withheld on this host to report
	}
	node, err := n.cs.CoreV1().Nodes().Get(ctx, "real-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cond *corev1.NodeCondition
	for i, c := range node.Status.Conditions {
		if c.Type == "RuntimeDegraded" {
			cond = &node.Status.Conditions[i]
		}
	}
	if cond == nil || cond.Status != corev1.ConditionTrue || !strings.Contains(cond.Message, "CAP_SYS_RESOURCE") {
		t.Fatalf("RuntimeDegraded condition %+v", cond)
	}
	evs, err := n.cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Node,involvedObject.name=real-1,reason=HostLimitsContainers"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) != 1 || evs.Items[0].Type != corev1.EventTypeWarning {
		t.Fatalf("HostLimitsContainers events: %+v", evs.Items)
	}
	log, err := os.ReadFile(n.agent.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(string(log), "they run degraded"); c != 1 {
		t.Fatalf("%d degradation warnings in the agent log, want 1", c)
	}
}
