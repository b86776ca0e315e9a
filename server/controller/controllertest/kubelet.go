package controllertest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Annotations that script a pod's life under the FakeKubelet.
const (
	// AnnotationExit: "0" succeeds, other codes fail, right after start.
	AnnotationExit = "controllertest.skiff.io/exit"
	// AnnotationNotReady: the pod runs but never becomes ready.
	AnnotationNotReady = "controllertest.skiff.io/not-ready"
	// AnnotationExitByIndex: "1=0,3=2" makes the pod of Job completion
	// index 1 succeed and that of index 3 fail with code 2 (overriding
	// AnnotationExit).
	AnnotationExitByIndex = "controllertest.skiff.io/exit-by-index"
)

// FakeKubelet plays the scheduler and the kubelets of a set of nodes: it
// registers Ready nodes, binds unbound pods round-robin, starts bound pods
// (Running and Ready, or finished as AnnotationExit says) and finishes the
// deletion of pods being deleted, like a kubelet does.
type FakeKubelet struct {
	Client kubernetes.Interface
	Nodes  []string
	next   atomic.Int64
	mu     sync.Mutex
	ips    int
}

// RunKubelet registers nodes and runs a FakeKubelet until the test ends.
func (e *Env) RunKubelet(nodes ...string) *FakeKubelet {
	e.T.Helper()
	k := &FakeKubelet{Client: e.Client, Nodes: nodes}
	for _, n := range nodes {
		if err := k.AddNode(e.Ctx, n, nil); err != nil {
			e.T.Fatal(err)
		}
	}
	go k.Run(e.Ctx)
	return k
}

// AddNode registers a Ready node.
func (k *FakeKubelet) AddNode(ctx context.Context, name string, labels map[string]string) error {
	now := metav1.Now()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now,
		}}},
	}
	out, err := k.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	out.Status = n.Status
	_, err = k.Client.CoreV1().Nodes().UpdateStatus(ctx, out, metav1.UpdateOptions{})
	return err
}

// Run handles pods until ctx ends.
func (k *FakeKubelet) Run(ctx context.Context) {
	f := informers.NewSharedInformerFactory(k.Client, 0)
	inf := f.Core().V1().Pods().Informer()
	work := make(chan *corev1.Pod, 10000)
	h := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			work <- p
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: h, UpdateFunc: func(_, obj any) { h(obj) }})
	f.Start(ctx.Done())
	defer f.Shutdown()
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-work:
			k.handle(ctx, p)
		}
	}
}

func (k *FakeKubelet) handle(ctx context.Context, p *corev1.Pod) {
	switch {
	case p.DeletionTimestamp != nil:
		zero := int64(0)
		err := k.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.UID}})
		_ = ignore(err)
	case p.Spec.NodeName == "" && len(k.Nodes) > 0:
		node := k.Nodes[int(k.next.Add(1))%len(k.Nodes)]
		err := k.Client.CoreV1().Pods(p.Namespace).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: node},
		}, metav1.CreateOptions{})
		_ = ignore(err)
	case p.Spec.NodeName != "" && p.Status.Phase == corev1.PodPending:
		k.start(ctx, p)
	}
}

// start reports the pod running (and ready), or finished.
func (k *FakeKubelet) start(ctx context.Context, p *corev1.Pod) {
	cp := p.DeepCopy()
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	k.mu.Lock()
	k.ips++
	ip := fmt.Sprintf("10.244.%d.%d", k.ips/250, k.ips%250+1)
	k.mu.Unlock()
	cp.Status.PodIP, cp.Status.PodIPs, cp.Status.StartTime = ip, []corev1.PodIP{{IP: ip}}, &now
	var statuses []corev1.ContainerStatus
	code, exits := p.Annotations[AnnotationExit]
	if idx, ok := p.Annotations["batch.kubernetes.io/job-completion-index"]; ok {
		for _, kv := range strings.Split(p.Annotations[AnnotationExitByIndex], ",") {
			if i, c, ok := strings.Cut(kv, "="); ok && i == idx {
				code, exits = c, true
			}
		}
	}
	for _, c := range p.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: ptr(true)}
		if exits {
			ec := int32(0)
			fmt.Sscan(code, &ec)
			reason := "Completed"
			if ec != 0 {
				reason = "Error"
			}
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: ec, Reason: reason, StartedAt: now, FinishedAt: now}
		} else {
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
			cs.Ready = p.Annotations[AnnotationNotReady] == ""
		}
		statuses = append(statuses, cs)
	}
	cp.Status.ContainerStatuses = statuses
	ready := corev1.ConditionTrue
	switch {
	case exits && code == "0":
		cp.Status.Phase, ready = corev1.PodSucceeded, corev1.ConditionFalse
	case exits:
		cp.Status.Phase, ready = corev1.PodFailed, corev1.ConditionFalse
	default:
		cp.Status.Phase = corev1.PodRunning
		if p.Annotations[AnnotationNotReady] != "" {
			ready = corev1.ConditionFalse
		}
	}
	cp.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: ready, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: ready, LastTransitionTime: now},
	}
	_, err := k.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{})
	_ = ignore(err)
}

func ignore(err error) error {
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func ptr[T any](v T) *T { return &v }
