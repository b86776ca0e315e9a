package agent

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/runtime/fake"
)

func TestNodeRegistrationAndLease(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	n, err := h.cs.CoreV1().Nodes().Get(ctx, testNode, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, corev1.ResourceEphemeralStorage} {
		if q, ok := n.Status.Capacity[r]; !ok || q.IsZero() {
			t.Errorf("capacity %s = %v", r, n.Status.Capacity[r])
		}
		if _, ok := n.Status.Allocatable[r]; !ok {
			t.Errorf("allocatable %s missing", r)
		}
	}
	if p := n.Status.Capacity[corev1.ResourcePods]; p.Value() != 110 {
		t.Errorf("pods capacity = %v, want 110", p.Value())
	}
	if n.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 {
		t.Errorf("kubelet port = %d", n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	}
	if len(n.Status.Addresses) == 0 || n.Status.Addresses[0].Type != corev1.NodeInternalIP || n.Status.Addresses[0].Address != "127.0.0.1" {
		t.Errorf("addresses = %v", n.Status.Addresses)
	}
	if n.Status.NodeInfo.KubeletVersion != Version || n.Status.NodeInfo.ContainerRuntimeVersion != "fake://0.1.0" || n.Status.NodeInfo.KernelVersion == "" {
		t.Errorf("nodeInfo = %+v", n.Status.NodeInfo)
	}
	want := map[corev1.NodeConditionType]corev1.ConditionStatus{
		corev1.NodeReady: corev1.ConditionTrue, corev1.NodeMemoryPressure: corev1.ConditionFalse,
		corev1.NodeDiskPressure: corev1.ConditionFalse, corev1.NodePIDPressure: corev1.ConditionFalse,
	}
	for _, c := range n.Status.Conditions {
		if w, ok := want[c.Type]; ok && w == c.Status {
			delete(want, c.Type)
		}
	}
	if len(want) > 0 {
		t.Errorf("conditions %v, missing %v", n.Status.Conditions, want)
	}
	if n.Labels["kubernetes.io/hostname"] != testNode || n.Labels["kubernetes.io/os"] != "linux" {
		t.Errorf("labels = %v", n.Labels)
	}
	// The Lease is created just after the Node: wait for it.
	var first time.Time
	h.waitFor("lease created", func() error {
		l, err := h.cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, testNode, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.RenewTime == nil {
			return fmt.Errorf("lease has no renewTime")
		}
		first = l.Spec.RenewTime.Time
		return nil
	})
	h.waitFor("lease renewed", func() error {
		l, err := h.cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, testNode, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !l.Spec.RenewTime.After(first) {
			return fmt.Errorf("renewTime still %v", first)
		}
		if *l.Spec.HolderIdentity != testNode || *l.Spec.LeaseDurationSeconds != 0 && len(l.OwnerReferences) != 1 {
			return fmt.Errorf("lease = %+v", l.Spec)
		}
		return nil
	})
}

func TestPodRunsToCompletion(t *testing.T) {
	h := newHarness(t)
	// It runs long enough for a poll to see it Running on a loaded machine.
	p := pod("done", corev1.RestartPolicyNever, ctr("main", "log=hi", "exit=0", "after=2s"))
	h.createPod(p)
	h.waitPod("done", "running", func(p *corev1.Pod) error {
		if p.Status.Phase != corev1.PodRunning || condition(p, corev1.PodReady) != corev1.ConditionTrue {
			return fmt.Errorf("phase %s ready %s", p.Status.Phase, condition(p, corev1.PodReady))
		}
		if !strings.HasPrefix(p.Status.PodIP, "10.42.7.") || p.Status.HostIP != "127.0.0.1" || p.Status.StartTime == nil {
			return fmt.Errorf("podIP %q hostIP %q", p.Status.PodIP, p.Status.HostIP)
		}
		return nil
	})
	got := h.waitPod("done", "succeeded", phaseIs(corev1.PodSucceeded))
	cs := cstatus(got, "main")
	if cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed" || cs.State.Terminated.ExitCode != 0 {
		t.Fatalf("status = %s", describe(got))
	}
	if !strings.HasPrefix(cs.ImageID, "sha256:") || !strings.HasPrefix(cs.ContainerID, "fake://") || cs.Image != "present:1.0" {
		t.Errorf("imageID %q containerID %q image %q", cs.ImageID, cs.ContainerID, cs.Image)
	}
	for _, c := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized} {
		if condition(got, c) != corev1.ConditionTrue {
			t.Errorf("condition %s = %s", c, condition(got, c))
		}
	}
	if condition(got, corev1.PodReady) != corev1.ConditionFalse || condition(got, corev1.ContainersReady) != corev1.ConditionFalse {
		t.Errorf("a finished pod is not ready: %v", got.Status.Conditions)
	}
	if got.Status.QOSClass != corev1.PodQOSBestEffort {
		t.Errorf("qosClass = %s", got.Status.QOSClass)
	}
	// The sandbox of a finished pod is stopped; its containers stay.
	h.waitFor("sandbox stopped", func() error {
		if n := h.rt.Calls("StopPodSandbox"); n == 0 {
			return fmt.Errorf("sandbox not stopped")
		}
		return nil
	})
	for _, r := range []string{"Pulled", "Created", "Started"} {
		h.waitEvent("done", r)
	}
}

func TestRestartPolicies(t *testing.T) {
	h := newHarness(t)
	h.createPod(pod("never-fail", corev1.RestartPolicyNever, ctr("c", "exit=3")))
	h.createPod(pod("onfailure-ok", corev1.RestartPolicyOnFailure, ctr("c", "exit=0", "after=50ms")))
	h.createPod(pod("onfailure-fail", corev1.RestartPolicyOnFailure, ctr("c", "exit=1", "after=50ms")))
	h.createPod(pod("always-ok", corev1.RestartPolicyAlways, ctr("c", "exit=0", "after=50ms")))

	p := h.waitPod("never-fail", "failed", phaseIs(corev1.PodFailed))
	if cs := cstatus(p, "c"); cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 3 || cs.State.Terminated.Reason != "Error" || cs.RestartCount != 0 {
		t.Errorf("never-fail: %s", describe(p))
	}
	h.waitPod("onfailure-ok", "succeeded", phaseIs(corev1.PodSucceeded))
	for _, name := range []string{"onfailure-fail", "always-ok"} {
		p := h.waitPod(name, "restarted twice", func(p *corev1.Pod) error {
			if cs := cstatus(p, "c"); cs.RestartCount < 2 {
				return fmt.Errorf("%s", describe(p))
			}
			return nil
		})
		if p.Status.Phase != corev1.PodRunning {
			t.Errorf("%s: phase %s", name, p.Status.Phase)
		}
		if cs := cstatus(p, "c"); cs.LastTerminationState.Terminated == nil {
			t.Errorf("%s: no lastState: %s", name, describe(p))
		}
	}
}

func TestCrashLoopBackOff(t *testing.T) {
	h := newHarness(t)
	h.createPod(pod("crash", corev1.RestartPolicyAlways, ctr("c", "exit=2")))
	p := h.waitPod("crash", "CrashLoopBackOff", func(p *corev1.Pod) error {
		cs := cstatus(p, "c")
		if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" || cs.LastTerminationState.Terminated == nil {
			return fmt.Errorf("%s", describe(p))
		}
		return nil
	})
	if lt := cstatus(p, "c").LastTerminationState.Terminated; lt.ExitCode != 2 {
		t.Errorf("lastState exit code %d", lt.ExitCode)
	}
	h.waitEvent("crash", "BackOff")
	// Back-off grows: the gaps between starts of successive instances
	// double (300ms, 600ms, 1.2s with the test's base).
	h.waitFor("four instances", func() error {
		if n := h.rt.Calls("StartContainer"); n < 4 {
			return fmt.Errorf("%d starts", n)
		}
		return nil
	})
	p = h.getPod("crash")
	if rc := cstatus(p, "c").RestartCount; rc < 2 {
		t.Errorf("restartCount = %d", rc)
	}
}

// TestStartErrorBackOff: a container whose start fails (the runtime
// records exit 128, StartError, and no start time) goes through
// CrashLoopBackOff like one that crashed, instead of being retried at
// every sync.
func TestStartErrorBackOff(t *testing.T) {
	h := newHarness(t)
	p := pod("nostart", corev1.RestartPolicyAlways, ctr("c", "sleep"))
	p.Annotations = map[string]string{fake.AnnotationFailStart: "true"}
	h.createPod(p)
	h.waitPod("nostart", "CrashLoopBackOff after a failed start", func(p *corev1.Pod) error {
		cs := cstatus(p, "c")
		if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" {
			return fmt.Errorf("%s", describe(p))
		}
		if lt := cs.LastTerminationState.Terminated; lt == nil || lt.Reason != "StartError" || lt.ExitCode != 128 {
			return fmt.Errorf("lastState: %s", describe(p))
		}
		return nil
	})
	// The failed starts count as restarts, and the back-off goes on.
	h.waitPod("nostart", "restartCount 3, still backing off", func(p *corev1.Pod) error {
		cs := cstatus(p, "c")
		if cs.RestartCount < 3 || cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" {
			return fmt.Errorf("%s", describe(p))
		}
		return nil
	})
}

func TestBackoffDelays(t *testing.T) {
	b := newBackoffs(10*time.Second, 5*time.Minute)
	want := []time.Duration{0, 0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	for n, w := range want {
		if got := b.delay(n); got != w {
			t.Errorf("delay(%d) = %v, want %v", n, got, w)
		}
	}
	if got := b.containerDelay(5, 11*time.Minute); got != 0 {
		t.Errorf("a container that ran 11m restarts at once, got %v", got)
	}
}

func TestOOMKilled(t *testing.T) {
	h := newHarness(t)
	h.createPod(pod("oom", corev1.RestartPolicyNever, ctr("c", "oom", "after=50ms")))
	p := h.waitPod("oom", "failed", phaseIs(corev1.PodFailed))
	if t2 := cstatus(p, "c").State.Terminated; t2 == nil || t2.Reason != "OOMKilled" || t2.ExitCode != 137 {
		t.Fatalf("status: %s", describe(p))
	}
}

func TestImagePullPolicies(t *testing.T) {
	h := newHarness(t)
	mk := func(name, image string, policy corev1.PullPolicy) *corev1.Pod {
		c := ctr("c")
		c.Image, c.ImagePullPolicy = image, policy
		return pod(name, corev1.RestartPolicyAlways, c)
	}
	h.createPod(mk("present", "present:1.0", corev1.PullIfNotPresent))
	h.createPod(mk("always", "present:1.0", corev1.PullAlways))
	h.createPod(mk("absent", "absent:2.0", corev1.PullIfNotPresent))
	h.createPod(mk("never", "missing:3.0", corev1.PullNever))
	h.createPod(mk("bad", "registry.example/doesnotexist:1", corev1.PullIfNotPresent))
	for _, n := range []string{"present", "always", "absent"} {
		h.waitPod(n, "running", phaseIs(corev1.PodRunning))
	}
	pulls := strings.Join(h.img.Pulls(), ",")
	if !strings.Contains(pulls, "present:1.0") || !strings.Contains(pulls, "absent:2.0") {
		t.Errorf("pulls = %s", pulls)
	}
	if strings.Count(pulls, "present:1.0") != 1 {
		t.Errorf("IfNotPresent pulled a present image: %s", pulls)
	}
	h.waitPod("never", "ErrImageNeverPull", func(p *corev1.Pod) error {
		if w := cstatus(p, "c").State.Waiting; w == nil || w.Reason != "ErrImageNeverPull" {
			return fmt.Errorf("%s", describe(p))
		}
		return nil
	})
	seen := map[string]bool{}
	h.waitPod("bad", "ErrImagePull then ImagePullBackOff", func(p *corev1.Pod) error {
		if w := cstatus(p, "c").State.Waiting; w != nil {
			seen[w.Reason] = true
		}
		if !seen["ImagePullBackOff"] {
			return fmt.Errorf("seen %v", seen)
		}
		return nil
	})
	h.waitEvent("absent", "Pulling")
	h.waitEvent("bad", "Failed")
}

func TestInitContainers(t *testing.T) {
	h := newHarness(t)
	p := pod("init", corev1.RestartPolicyAlways, ctr("main"))
	p.Spec.InitContainers = []corev1.Container{
		{Name: "first", Image: "present:1.0", Args: []string{"exit=0", "after=100ms"}},
		{Name: "second", Image: "present:1.0", Args: []string{"exit=0", "after=50ms"}},
	}
	h.createPod(p)
	got := h.waitPod("init", "running", phaseIs(corev1.PodRunning))
	first, second, main := h.containerOf("first"), h.containerOf("second"), h.containerOf("main")
	if !first.FinishedAt.Before(second.StartedAt) || !second.FinishedAt.Before(main.StartedAt) {
		t.Errorf("init containers did not run in order: first %v-%v second %v-%v main %v",
			first.StartedAt, first.FinishedAt, second.StartedAt, second.FinishedAt, main.StartedAt)
	}
	if condition(got, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Errorf("Initialized = %s", condition(got, corev1.PodInitialized))
	}

	bad := pod("init-fail", corev1.RestartPolicyNever, ctr("main2"))
	bad.Spec.InitContainers = []corev1.Container{{Name: "broken", Image: "present:1.0", Args: []string{"exit=1"}}}
	h.createPod(bad)
	got = h.waitPod("init-fail", "failed", phaseIs(corev1.PodFailed))
	if len(h.rt.ContainerIDs("main2")) != 0 {
		t.Errorf("main container started after a failed init container")
	}
	if w := cstatus(got, "main2").State.Waiting; w == nil || w.Reason != "PodInitializing" {
		t.Errorf("main2: %s", describe(got))
	}
}

func TestProbes(t *testing.T) {
	var ready, alive atomic.Bool
	ready.Store(false)
	alive.Store(true)
	h := newHarness(t)
	h.rt.ExecFunc = func(c *fake.FakeContainer, cmd []string) ([]byte, []byte, int) {
		switch strings.Join(cmd, " ") {
		case "check-ready":
			if ready.Load() {
				return nil, nil, 0
			}
		case "check-alive":
			if alive.Load() {
				return nil, nil, 0
			}
		case "started":
			return nil, nil, 0
		}
		return nil, []byte("not ok"), 1
	}
	c := ctr("c")
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check-ready"}}}, PeriodSeconds: 1, FailureThreshold: 1}
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check-alive"}}}, PeriodSeconds: 1, FailureThreshold: 2}
	c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"started"}}}, PeriodSeconds: 1}
	h.createPod(pod("probed", corev1.RestartPolicyAlways, c))
	p := h.waitPod("probed", "running, not ready", func(p *corev1.Pod) error {
		cs := cstatus(p, "c")
		if cs.State.Running == nil || cs.Started == nil || !*cs.Started {
			return fmt.Errorf("%s", describe(p))
		}
		return nil
	})
	if condition(p, corev1.PodReady) == corev1.ConditionTrue {
		t.Fatalf("ready before the readiness probe succeeded")
	}
	ready.Store(true)
	h.waitPod("probed", "ready", func(p *corev1.Pod) error {
		if condition(p, corev1.PodReady) != corev1.ConditionTrue || !cstatus(p, "c").Ready {
			return fmt.Errorf("%s", describe(p))
		}
		return nil
	})
	ready.Store(false)
	h.waitPod("probed", "not ready again", func(p *corev1.Pod) error {
		if condition(p, corev1.PodReady) != corev1.ConditionFalse {
			return fmt.Errorf("%s", describe(p))
		}
		return nil
	})
	h.waitEvent("probed", "Unhealthy")
	alive.Store(false)
	h.waitPod("probed", "restarted by liveness", func(p *corev1.Pod) error {
		if cstatus(p, "c").RestartCount < 1 {
			return fmt.Errorf("%s", describe(p))
		}
		return nil
	})
	h.waitEvent("probed", "Killing")
	alive.Store(true)
}

func TestHTTPAndTCPProbes(t *testing.T) {
	h := newHarness(t)
	c := ctr("web", "http=8080", "tcp=9000")
	c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 1, FailureThreshold: 1}
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9000)}}, PeriodSeconds: 1}
	h.createPod(pod("web", corev1.RestartPolicyAlways, c))
	h.waitPod("web", "ready", func(p *corev1.Pod) error {
		if condition(p, corev1.PodReady) != corev1.ConditionTrue {
			return fmt.Errorf("%s", describe(p))
		}
		return nil
	})
	id := h.containerOf("web").ID
	if _, _, err := h.rt.ExecSync(context.Background(), id, []string{"touch", "/fail-http"}, 1); err != nil {
		t.Fatal(err)
	}
	h.waitPod("web", "unready on HTTP 500", func(p *corev1.Pod) error {
		if condition(p, corev1.PodReady) != corev1.ConditionFalse {
			return fmt.Errorf("%s", describe(p))
		}
		return nil
	})
	if rc := cstatus(h.getPod("web"), "web").RestartCount; rc != 0 {
		t.Errorf("the TCP liveness probe restarted the container (%d)", rc)
	}
}

func TestGracefulTermination(t *testing.T) {
	h := newHarness(t)
	var preStop atomic.Int32
	h.rt.ExecFunc = func(c *fake.FakeContainer, cmd []string) ([]byte, []byte, int) {
		if len(cmd) > 0 && cmd[0] == "pre-stop" {
			preStop.Add(1)
		}
		return nil, nil, 0
	}
	c := ctr("c", "ignore-sigterm")
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"pre-stop"}}}}
	p := pod("graceful", corev1.RestartPolicyAlways, c)
	grace := int64(2)
	p.Spec.TerminationGracePeriodSeconds = &grace
	h.createPod(p)
	h.waitPod("graceful", "running", phaseIs(corev1.PodRunning))
	id := h.containerOf("c").ID
	start := time.Now()
	if err := h.cs.CoreV1().Pods("default").Delete(context.Background(), "graceful", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("pod gone", func() error {
		_, err := h.cs.CoreV1().Pods("default").Get(context.Background(), "graceful", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	if took := time.Since(start); took < time.Second {
		t.Errorf("a container ignoring SIGTERM was stopped after %v, before its grace period", took)
	}
	if preStop.Load() != 1 {
		t.Errorf("preStop ran %d times", preStop.Load())
	}
	h.waitFor("sandbox removed", func() error {
		if n := h.rt.SandboxCount(); n != 0 {
			return fmt.Errorf("%d sandboxes", n)
		}
		return nil
	})
	if _, ok := h.rt.Container(id); ok {
		t.Errorf("container %s not removed", id)
	}
	h.waitEvent("graceful", "Killing")
}

func TestAdoptionAfterRestart(t *testing.T) {
	h := newHarness(t)
	h.createPod(pod("keep", corev1.RestartPolicyAlways, ctr("c", "exit=1", "after=50ms")))
	h.createPod(pod("stable", corev1.RestartPolicyAlways, ctr("s")))
	h.createPod(pod("gone", corev1.RestartPolicyAlways, ctr("g")))
	h.waitPod("keep", "two restarts", func(p *corev1.Pod) error {
		if cstatus(p, "c").RestartCount < 2 {
			return fmt.Errorf("%s", describe(p))
		}
		return nil
	})
	h.waitPod("stable", "running", phaseIs(corev1.PodRunning))
	h.waitPod("gone", "running", phaseIs(corev1.PodRunning))
	h.stop()
	stableIDs := h.rt.ContainerIDs("s")
	rcBefore := cstatus(h.getPod("keep"), "c").RestartCount
	// Deleted while the agent is down (force: no kubelet to confirm).
	zero := int64(0)
	if err := h.cs.CoreV1().Pods("default").Delete(context.Background(), "gone", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	sandboxesBefore := h.rt.SandboxCount()
	h.start()
	h.waitFor("orphan cleaned up", func() error {
		if ids := h.rt.ContainerIDs("g"); len(ids) != 0 {
			return fmt.Errorf("containers of the deleted pod remain: %v", ids)
		}
		if n := h.rt.SandboxCount(); n != sandboxesBefore-1 {
			return fmt.Errorf("%d sandboxes, want %d", n, sandboxesBefore-1)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // a few relists and resyncs: nothing may be started twice
	if got := h.rt.ContainerIDs("s"); len(got) != len(stableIDs) || got[0] != stableIDs[0] {
		t.Errorf("running container not adopted: before %v after %v", stableIDs, got)
	}
	p := h.waitPod("keep", "restart count kept", func(p *corev1.Pod) error {
		if rc := cstatus(p, "c").RestartCount; rc < rcBefore {
			return fmt.Errorf("restartCount %d < %d before the restart", rc, rcBefore)
		}
		return nil
	})
	_ = p
}

func TestResourcesAndSecurityContext(t *testing.T) {
	h := newHarness(t)
	c := ctr("c")
	c.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
	}
	uid, gid, yes, no := int64(1000), int64(2000), true, false
	c.SecurityContext = &corev1.SecurityContext{
		RunAsUser: &uid, RunAsGroup: &gid, ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no,
		Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}, Drop: []corev1.Capability{"ALL"}},
	}
	c.Command, c.Args, c.WorkingDir = []string{"/bin/app"}, []string{"--name=$(NAME)", "$$(NAME)"}, "/work"
	c.Env = []corev1.EnvVar{{Name: "NAME", Value: "skiff"}}
	p := pod("secure", corev1.RestartPolicyAlways, c)
	p.Spec.SecurityContext = &corev1.PodSecurityContext{SupplementalGroups: []int64{3000}}
	h.createPod(p)
	got := h.waitPod("secure", "running", phaseIs(corev1.PodRunning))
	if got.Status.QOSClass != corev1.PodQOSBurstable {
		t.Errorf("qos = %s", got.Status.QOSClass)
	}
	cfg := h.containerOf("c").Config
	r := cfg.Linux.Resources
	if r.CpuShares != 256 || r.CpuQuota != 50000 || r.CpuPeriod != 100000 || r.MemoryLimitInBytes != 128<<20 || r.OomScoreAdj < 2 || r.OomScoreAdj > 999 {
		t.Errorf("resources = %+v", r)
	}
	sc := cfg.Linux.SecurityContext
	if sc.RunAsUser.GetValue() != 1000 || sc.RunAsGroup.GetValue() != 2000 || !sc.ReadonlyRootfs || !sc.NoNewPrivs ||
		sc.Capabilities.AddCapabilities[0] != "NET_ADMIN" || sc.Capabilities.DropCapabilities[0] != "ALL" ||
		sc.Seccomp.GetProfileType().String() != "RuntimeDefault" || len(sc.SupplementalGroups) != 1 {
		t.Errorf("security context = %+v", sc)
	}
	if strings.Join(cfg.Command, " ") != "/bin/app" || strings.Join(cfg.Args, " ") != "--name=skiff $(NAME)" || cfg.WorkingDir != "/work" {
		t.Errorf("command %v args %v workdir %q", cfg.Command, cfg.Args, cfg.WorkingDir)
	}
	if cfg.LogPath != "c/0.log" || cfg.Labels[labelPodUID] != string(got.UID) || cfg.Annotations[annRestartCount] != "0" {
		t.Errorf("log path %q labels %v annotations %v", cfg.LogPath, cfg.Labels, cfg.Annotations)
	}
}

func TestHostNetworkPod(t *testing.T) {
	h := newHarness(t)
	p := pod("hostnet", corev1.RestartPolicyAlways, ctr("c"))
	p.Spec.HostNetwork = true
	h.createPod(p)
	got := h.waitPod("hostnet", "running", phaseIs(corev1.PodRunning))
	if got.Status.PodIP != "127.0.0.1" || len(got.Status.PodIPs) != 1 {
		t.Errorf("podIP %q podIPs %v, want the node's address", got.Status.PodIP, got.Status.PodIPs)
	}
	c := h.containerOf("c")
	if ns := c.Config.Linux.SecurityContext.NamespaceOptions; ns.GetNetwork().String() != "NODE" {
		t.Errorf("network namespace mode %v", ns.GetNetwork())
	}
	hosts := readLink(t, mountAt(c.Config.Mounts, "/etc/hosts").HostPath)
	node, _ := os.ReadFile("/etc/hosts")
	if hosts != "# Kubernetes-managed hosts file (host network).\n"+string(node) {
		t.Errorf("host-network pod's /etc/hosts is not the node's under the kubelet's header:\n%s", hosts)
	}
}
