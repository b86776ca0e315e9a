package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/runtime/fake"
	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

const testNode = "node1"

// harness runs an agent against an in-process API server and the fake
// runtime.
type harness struct {
	t      *testing.T
	api    *apiservertest.Server
	cs     kubernetes.Interface
	rt     *fake.FakeRuntime
	img    *fake.FakeImageService
	mnt    *fakeMounter
	dir    string
	a      *Agent
	cancel context.CancelFunc
	done   chan error
	tweak  func(*Config)
}

func newHarness(t *testing.T, tweak ...func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, api: apiservertest.NewServer(t, apiservertest.Options{}), rt: fake.NewFakeRuntime(),
		img: fake.NewFakeImageService("present:1.0"), mnt: &fakeMounter{}, dir: t.TempDir()}
	if len(tweak) > 0 {
		h.tweak = tweak[0]
	}
	h.cs = h.api.Clientset(t)
	for _, ns := range []string{"default", "kube-node-lease"} {
		_, err := h.cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("namespace %s: %v", ns, err)
		}
	}
	h.start()
	t.Cleanup(h.stop)
	// The master's node IPAM is not here: assign the pod CIDR by hand.
	h.waitFor("node registered", func() error {
		_, err := h.cs.CoreV1().Nodes().Get(context.Background(), testNode, metav1.GetOptions{})
		return err
	})
	_, err := h.cs.CoreV1().Nodes().Patch(context.Background(), testNode, types.MergePatchType,
		[]byte(`{"spec":{"podCIDR":"10.42.7.0/24","podCIDRs":["10.42.7.0/24"]}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("set pod CIDR: %v", err)
	}
	h.waitFor("pod CIDR", func() error {
		if h.a.PodCIDR() == "" {
			return fmt.Errorf("no pod CIDR yet")
		}
		return nil
	})
	return h
}

func (h *harness) start() {
	h.t.Helper()
	level := slog.LevelWarn
	if os.Getenv("SKIFF_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	cfg := Config{
		NodeName: testNode, DataDir: h.dir, NodeIP: "127.0.0.1", Client: h.cs,
		Runtime: h.rt, Images: h.img, Mounter: h.mnt,
		LeaseDuration: 400 * time.Millisecond, NodeStatusInterval: 100 * time.Millisecond,
		RelistPeriod: 20 * time.Millisecond, ResyncInterval: 300 * time.Millisecond,
		HousekeepingPeriod: 200 * time.Millisecond, VolumeRefreshPeriod: 100 * time.Millisecond,
		BackoffBase: 300 * time.Millisecond, BackoffMax: 2 * time.Second, ProbeSecond: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	if h.tweak != nil {
		h.tweak(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		h.t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.a, h.cancel, h.done = a, cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
}

// stop stops the agent (its containers keep running in the fake runtime,
// as a real agent's do).
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.t.Errorf("agent did not stop")
	}
	h.cancel = nil
}

func (h *harness) restart() {
	h.stop()
	h.start()
}

func (h *harness) waitFor(what string, cond func() error) {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("waiting for %s: %v", what, err)
}

func (h *harness) createPod(p *corev1.Pod) *corev1.Pod {
	h.t.Helper()
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	if p.Spec.NodeName == "" {
		p.Spec.NodeName = testNode
	}
	out, err := h.cs.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatalf("create pod %s: %v", p.Name, err)
	}
	return out
}

func (h *harness) getPod(name string) *corev1.Pod {
	h.t.Helper()
	p, err := h.cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatalf("get pod %s: %v", name, err)
	}
	return p
}

// waitPod waits until cond holds for pod name.
func (h *harness) waitPod(name, what string, cond func(*corev1.Pod) error) *corev1.Pod {
	h.t.Helper()
	var last *corev1.Pod
	h.waitFor(name+": "+what, func() error {
		p, err := h.cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		last = p
		return cond(p)
	})
	return last
}

func phaseIs(ph corev1.PodPhase) func(*corev1.Pod) error {
	return func(p *corev1.Pod) error {
		if p.Status.Phase != ph {
			return fmt.Errorf("phase %q, want %q (%s)", p.Status.Phase, ph, describe(p))
		}
		return nil
	}
}

func describe(p *corev1.Pod) string {
	var b strings.Builder
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, "%s: restarts=%d ready=%v ", cs.Name, cs.RestartCount, cs.Ready)
		switch {
		case cs.State.Running != nil:
			b.WriteString("running")
		case cs.State.Waiting != nil:
			b.WriteString("waiting " + cs.State.Waiting.Reason)
		case cs.State.Terminated != nil:
			fmt.Fprintf(&b, "terminated %s(%d)", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		}
		b.WriteString("; ")
	}
	return b.String()
}

func cstatus(p *corev1.Pod, name string) corev1.ContainerStatus {
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if cs.Name == name {
			return cs
		}
	}
	return corev1.ContainerStatus{}
}

func condition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

// pod builds a simple pod with one container per (name, args) pair.
func pod(name string, policy corev1.RestartPolicy, containers ...corev1.Container) *corev1.Pod {
	for i := range containers {
		if containers[i].Image == "" {
			containers[i].Image = "present:1.0"
		}
	}
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{Containers: containers, RestartPolicy: policy, TerminationGracePeriodSeconds: &grace},
	}
}

func ctr(name string, args ...string) corev1.Container {
	return corev1.Container{Name: name, Args: args}
}

// containerOf returns the newest fake container named name.
func (h *harness) containerOf(name string) fake.FakeContainer {
	h.t.Helper()
	ids := h.rt.ContainerIDs(name)
	if len(ids) == 0 {
		h.t.Fatalf("no container %s", name)
	}
	c, _ := h.rt.Container(ids[len(ids)-1])
	return c
}

func (h *harness) events(podName string) []corev1.Event {
	evs, err := h.cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		h.t.Fatalf("events: %v", err)
	}
	var out []corev1.Event
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == podName {
			out = append(out, e)
		}
	}
	return out
}

func (h *harness) waitEvent(podName, reason string) {
	h.t.Helper()
	h.waitFor("event "+reason+" of "+podName, func() error {
		for _, e := range h.events(podName) {
			if e.Reason == reason {
				return nil
			}
		}
		return fmt.Errorf("no %s event", reason)
	})
}

// fakeMounter records tmpfs mounts instead of making them.
type fakeMounter struct {
	mu     sync.Mutex
	tmpfs  map[string]int64
	umount []string
}

func (m *fakeMounter) MountTmpfs(dir string, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tmpfs == nil {
		m.tmpfs = map[string]int64{}
	}
	m.tmpfs[dir] = size
	return nil
}

func (m *fakeMounter) UnmountAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.umount = append(m.umount, dir)
	return nil
}
