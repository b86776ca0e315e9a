package agent

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podStatus computes a pod's status from the runtime, the probes and what
// the worker remembers.
func (a *Agent) podStatus(pod *corev1.Pod, rt *podRuntime, st *podState) corev1.PodStatus {
	s := corev1.PodStatus{
		HostIP:    a.cfg.NodeIP,
		HostIPs:   []corev1.HostIP{{IP: a.cfg.NodeIP}},
		QOSClass:  qosClass(pod),
		StartTime: &st.startTime,
	}
	ip := rt.podIP()
	if pod.Spec.HostNetwork {
		ip = a.cfg.NodeIP
	}
	if ip == "" && rt.ready == nil {
		ip = pod.Status.PodIP // keep the last known address of a finished pod
	}
	if ip != "" {
		s.PodIP = ip
		s.PodIPs = []corev1.PodIP{{IP: ip}}
		for _, extra := range rt.readyStatus.GetNetwork().GetAdditionalIps() {
			s.PodIPs = append(s.PodIPs, corev1.PodIP{IP: extra.Ip})
		}
	}
	old := map[string]corev1.ContainerStatus{}
	for _, cs := range append(append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...), pod.Status.EphemeralContainerStatuses...) {
		old[cs.Name] = cs
	}
	initDone := true
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := a.containerStatus(pod, c, rt, st, old[c.Name], "PodInitializing")
		// An init container is ready once it exited with success (the
		// kubelet's rule; its Initialized condition reads it).
		cs.Ready = cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0
		if !cs.Ready {
			initDone = false
		}
		s.InitContainerStatuses = append(s.InitContainerStatuses, cs)
	}
	waitReason := "ContainerCreating"
	if !initDone {
		waitReason = "PodInitializing"
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		s.ContainerStatuses = append(s.ContainerStatuses, a.containerStatus(pod, c, rt, st, old[c.Name], waitReason))
	}
	for i := range pod.Spec.EphemeralContainers {
		c := (*corev1.Container)(&pod.Spec.EphemeralContainers[i].EphemeralContainerCommon)
		s.EphemeralContainerStatuses = append(s.EphemeralContainerStatuses, a.containerStatus(pod, c, rt, st, old[c.Name], "ContainerCreating"))
	}
	s.Phase = podPhase(pod, s.InitContainerStatuses, s.ContainerStatuses, initDone)
	if isTerminal(pod.Status.Phase) {
		s.Phase = pod.Status.Phase // never leave a terminal phase
		s.Reason, s.Message = pod.Status.Reason, pod.Status.Message
	}
	if st.rejectReason != "" { // sysctl.go
		s.Phase, s.Reason, s.Message = corev1.PodFailed, st.rejectReason, st.rejectMessage
	}
	s.Conditions = a.podConditions(pod, &s, rt, initDone)
	return s
}

// containerStatus reports one container: the newest instance's state,
// the previous one's as lastState, readiness and restarts.
func (a *Agent) containerStatus(pod *corev1.Pod, c *corev1.Container, rt *podRuntime, st *podState, old corev1.ContainerStatus, waitReason string) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: old.ImageID}
	cur := rt.latest(c.Name)
	if cur == nil {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: waitReason}
		if w := st.waiting[c.Name]; w != nil {
			cs.State.Waiting = w.DeepCopy()
		}
		cs.RestartCount = old.RestartCount
		cs.LastTerminationState = old.LastTerminationState
		if old.State.Terminated != nil {
			// The runtime forgot the instance (restarted node): keep what
			// the API knew.
			cs.State = old.State
		}
		f := false
		cs.Started = &f
		return cs
	}
	cs.RestartCount = int32(attemptOf(cur))
	cs.ContainerID = a.runtimeName + "://" + cur.Id
	if cur.ImageRef != "" {
		cs.ImageID = cur.ImageRef
	}
	switch cur.State {
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: nanoTime(cur.StartedAt)}
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		cs.State.Terminated = a.terminated(c, cur)
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerStatusUnknown"}
	}
	if prev := rt.previous(c.Name); prev != nil && prev.State == runtimeapi.ContainerState_CONTAINER_EXITED {
		cs.LastTerminationState.Terminated = a.terminated(c, prev)
	} else if old.LastTerminationState.Terminated != nil {
		cs.LastTerminationState = old.LastTerminationState
	}
	if w := st.waiting[c.Name]; w != nil && cur.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		// Waiting to restart: the exited instance becomes lastState.
		if cs.State.Terminated != nil {
			cs.LastTerminationState = corev1.ContainerState{Terminated: cs.State.Terminated}
		}
		cs.State = corev1.ContainerState{Waiting: w.DeepCopy()}
	}
	running := cur.State == runtimeapi.ContainerState_CONTAINER_RUNNING
	started := running && a.probes.started(pod.UID, c.Name, cur.Id, c)
	cs.Started = &started
	cs.Ready = started && a.probes.ready(pod.UID, c.Name, cur.Id, c)
	return cs
}

// terminated builds the Terminated state of an exited instance, with the
// termination message read from its file (or the log tail, when asked).
func (a *Agent) terminated(c *corev1.Container, s *runtimeapi.ContainerStatus) *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{
		ExitCode:    s.ExitCode,
		Reason:      s.Reason,
		Message:     s.Message,
		StartedAt:   nanoTime(s.StartedAt),
		FinishedAt:  nanoTime(s.FinishedAt),
		ContainerID: a.runtimeName + "://" + s.Id,
	}
	if t.Reason == "" {
		t.Reason = "Error"
		if s.ExitCode == 0 {
			t.Reason = "Completed"
		}
	}
	if path := s.Annotations[annTerminationLog]; path != "" && t.Message == "" {
		if b, err := readLimited(path, 4096); err == nil {
			t.Message = string(b)
		}
	}
	if t.Message == "" && s.ExitCode != 0 && c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError && s.LogPath != "" {
		t.Message = tailLogMessage(s.LogPath, 80, 2048)
	}
	return t
}

func readLimited(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	m, _ := f.Read(buf)
	return buf[:m], nil
}

func nanoTime(ns int64) metav1.Time {
	if ns == 0 {
		return metav1.Time{}
	}
	return metav1.NewTime(time.Unix(0, ns).UTC().Truncate(time.Second))
}

// podPhase is the kubelet's phase rule.
func podPhase(pod *corev1.Pod, initStatuses, statuses []corev1.ContainerStatus, initDone bool) corev1.PodPhase {
	if !initDone {
		for _, cs := range initStatuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
				return corev1.PodFailed
			}
		}
		return corev1.PodPending
	}
	var running, waiting, succeeded, failed, unstarted int
	for _, cs := range statuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			} else {
				failed++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				waiting++ // restarting: counts as running
			} else {
				unstarted++
			}
		}
	}
	switch {
	case unstarted > 0:
		return corev1.PodPending
	case running > 0 || waiting > 0:
		return corev1.PodRunning
	case running == 0 && succeeded > 0 && failed == 0:
		if pod.Spec.RestartPolicy == corev1.RestartPolicyAlways {
			return corev1.PodRunning
		}
		return corev1.PodSucceeded
	case failed > 0:
		if pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}

// podConditions sets the conditions the kubelet owns and keeps the others
// (PodScheduled from the binding, DisruptionTarget...).
func (a *Agent) podConditions(pod *corev1.Pod, s *corev1.PodStatus, rt *podRuntime, initDone bool) []corev1.PodCondition {
	now := nowSecond()
	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, LastTransitionTime: now}
		if ok {
			c.Status, c.Reason = corev1.ConditionTrue, ""
		}
		return c
	}
	allReady := len(s.ContainerStatuses) > 0
	var notReady []string
	for _, cs := range s.ContainerStatuses {
		if !cs.Ready {
			allReady = false
			notReady = append(notReady, cs.Name)
		}
	}
	terminal := isTerminal(s.Phase)
	readyReason := "ContainersNotReady"
	if terminal {
		allReady = false
		readyReason = "PodCompleted"
		if s.Phase == corev1.PodFailed {
			readyReason = "PodFailed"
		}
	}
	gatesOK := true
	for _, g := range pod.Spec.ReadinessGates {
		found := false
		for _, c := range pod.Status.Conditions {
			if c.Type == g.ConditionType && c.Status == corev1.ConditionTrue {
				found = true
			}
		}
		gatesOK = gatesOK && found
	}
	initialized := initializedCondition(s, initDone)
	initialized.LastTransitionTime = now
	owned := []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, rt.ready != nil, ""),
		initialized,
		cond(corev1.ContainersReady, allReady, readyReason),
		cond(corev1.PodReady, allReady && gatesOK, readyReason),
		cond(corev1.PodScheduled, true, ""),
	}
	for i := range owned {
		if owned[i].Status == corev1.ConditionFalse && len(notReady) > 0 && !terminal &&
			(owned[i].Type == corev1.ContainersReady || owned[i].Type == corev1.PodReady) {
			owned[i].Message = "containers with unready status: [" + strings.Join(notReady, " ") + "]"
		}
		if owned[i].Type == corev1.PodReady && allReady && !gatesOK {
			owned[i].Reason = "ReadinessGatesNotReady"
		}
	}
	out := make([]corev1.PodCondition, 0, len(owned)+len(pod.Status.Conditions))
	isOwned := map[corev1.PodConditionType]bool{}
	for _, c := range owned {
		isOwned[c.Type] = true
	}
	for _, c := range pod.Status.Conditions {
		if !isOwned[c.Type] {
			out = append(out, c)
		}
	}
	for _, c := range owned {
		for _, prev := range pod.Status.Conditions {
			if prev.Type == c.Type && prev.Status == c.Status {
				c.LastTransitionTime = prev.LastTransitionTime
			}
		}
		out = append(out, c)
	}
	return out
}

// initializedCondition is the kubelet's Initialized condition: true once
// every init container succeeded (reason PodCompleted in a Succeeded pod)
// or a regular container has run; else false, naming the init
// containers that have not succeeded.
func initializedCondition(s *corev1.PodStatus, initDone bool) corev1.PodCondition {
	c := corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}
	if s.Phase == corev1.PodSucceeded {
		c.Reason = "PodCompleted"
		return c
	}
	for _, cs := range s.ContainerStatuses {
		if cs.State.Running != nil || cs.State.Terminated != nil {
			return c
		}
	}
	var incomplete []string
	for _, cs := range s.InitContainerStatuses {
		if !cs.Ready {
			incomplete = append(incomplete, cs.Name)
		}
	}
	if initDone || len(incomplete) == 0 {
		return c
	}
	c.Status, c.Reason = corev1.ConditionFalse, "ContainersNotInitialized"
	c.Message = "containers with incomplete status: [" + strings.Join(incomplete, " ") + "]"
	return c
}

// statusManager sends pod statuses to the API: the newest status of each
// pod, patched when it differs from what the API holds.
type statusManager struct {
	a       *Agent
	mu      sync.Mutex
	desired map[types.UID]*desiredStatus
	wake    chan struct{}
}

type desiredStatus struct {
	namespace, name string
	status          corev1.PodStatus
	// sent is the last status the API acknowledged.
	sent *corev1.PodStatus
}

func newStatusManager(a *Agent) *statusManager {
	return &statusManager{a: a, desired: map[types.UID]*desiredStatus{}, wake: make(chan struct{}, 1)}
}

// set records the status a pod should have.
func (m *statusManager) set(pod *corev1.Pod, s corev1.PodStatus) {
	m.mu.Lock()
	d := m.desired[pod.UID]
	if d == nil {
		d = &desiredStatus{namespace: pod.Namespace, name: pod.Name}
		m.desired[pod.UID] = d
	}
	changed := !apiequality.Semantic.DeepEqual(d.status, s)
	d.status = s
	if d.sent == nil && apiequality.Semantic.DeepEqual(pod.Status, s) {
		sent := s
		d.sent = &sent
	}
	m.mu.Unlock()
	if changed {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// resend marks the status of uid as not sent (a static pod has a new
// mirror pod).
func (m *statusManager) resend(uid types.UID) {
	m.mu.Lock()
	if d := m.desired[uid]; d != nil {
		d.sent = nil
	}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *statusManager) forget(uid types.UID) {
	m.mu.Lock()
	delete(m.desired, uid)
	m.mu.Unlock()
}

// status returns the desired status of a pod (tests, logs).
func (m *statusManager) status(uid types.UID) (corev1.PodStatus, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.desired[uid]
	if !ok {
		return corev1.PodStatus{}, false
	}
	return *d.status.DeepCopy(), true
}

func (m *statusManager) run(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		case <-t.C:
		}
		m.mu.Lock()
		var dirty []types.UID
		for uid, d := range m.desired {
			if d.sent == nil || !apiequality.Semantic.DeepEqual(*d.sent, d.status) {
				dirty = append(dirty, uid)
			}
		}
		m.mu.Unlock()
		// A few in flight at once: each patch waits for a Raft commit.
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, uid := range dirty {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := m.flush(ctx, uid); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
					m.a.log.Warn("update pod status", "uid", uid, "err", err)
				}
			}()
		}
		wg.Wait()
	}
}

// flush sends the desired status of uid now (merge patch of status, with a
// UID precondition on the pod).
func (m *statusManager) flush(ctx context.Context, uid types.UID) error {
	m.mu.Lock()
	d := m.desired[uid]
	if d == nil {
		m.mu.Unlock()
		return nil
	}
	s := *d.status.DeepCopy()
	ns, name := d.namespace, d.name
	m.mu.Unlock()
	target := uid
	if m.a.static.isStatic(uid) {
		// A static pod's status goes to its mirror pod, once there is one.
		mirror, ok := m.a.static.mirrorOf(uid)
		if !ok {
			return nil
		}
		target = mirror
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": target},
		"status":   statusPatch(s),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = m.a.cfg.Client.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return err
	}
	m.mu.Lock()
	if d := m.desired[uid]; d != nil {
		d.sent = &s
	}
	m.mu.Unlock()
	return nil
}

// statusPatch renders a status for a merge patch: lists are replaced
// whole, and fields the kubelet clears are sent as null.
func statusPatch(s corev1.PodStatus) map[string]any {
	b, _ := json.Marshal(s)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"podIP", "podIPs", "message", "reason"} {
		if _, ok := m[k]; !ok {
			m[k] = nil
		}
	}
	return m
}
