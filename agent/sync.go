package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podState is what a pod worker remembers between syncs; everything else
// is read again from the runtime and the API every time, so that a
// restarted agent carries on from what the runtime holds.
type podState struct {
	// waiting holds why a container is not running (ErrImagePull,
	// CrashLoopBackOff, CreateContainerConfigError...).
	waiting map[string]*corev1.ContainerStateWaiting
	// pullFailures counts failed pulls per container, for the pull
	// back-off; lastPullFailure is when the last one failed.
	pullFailures    map[string]int
	lastPullFailure map[string]time.Time
	// backoffEvented: the BackOff event was sent for this container
	// instance (ID) already.
	backoffEvented map[string]bool
	// sandboxFailures counts failed sandbox creations (back-off).
	sandboxFailures int
	lastSandboxFail time.Time
	// terminal: the pod reached Succeeded or Failed.
	terminal bool
	// killed: the pod's containers were stopped for deletion.
	killed bool
	// startTime is when the agent first saw the pod.
	startTime metav1.Time
	// volumeErr is the last volume setup error ("" when mounted).
	volumeErr string
	// rejectReason and rejectMessage say why the agent refused to run
	// the pod (SysctlForbidden): it fails with them.
	rejectReason, rejectMessage string
}

func newPodState() *podState {
	return &podState{
		waiting:         map[string]*corev1.ContainerStateWaiting{},
		pullFailures:    map[string]int{},
		lastPullFailure: map[string]time.Time{},
		backoffEvented:  map[string]bool{},
	}
}

func nowSecond() metav1.Time { return metav1.NewTime(time.Now().UTC().Truncate(time.Second)) }

// syncPod brings the runtime in line with pod and reports its status. It
// returns when to sync again (0: at the next resync) and whether the pod
// is finished with (gone from the API and the node).
func (a *Agent) syncPod(ctx context.Context, pod *corev1.Pod, gone bool, st *podState) (time.Duration, bool) {
	log := a.log.With("pod", pod.Namespace+"/"+pod.Name)
	rt, err := a.podRuntime(ctx, pod.UID)
	if err != nil {
		log.Warn("read runtime state", "err", err)
		return 2 * time.Second, false
	}
	if st.startTime.IsZero() {
		st.startTime = nowSecond()
		if pod.Status.StartTime != nil {
			st.startTime = *pod.Status.StartTime
		}
	}
	switch {
	case gone:
		a.killPod(ctx, pod, rt, gracePeriod(pod), "pod deleted")
		if err := a.removePod(ctx, pod.UID, pod.Namespace, pod.Name); err != nil {
			log.Warn("remove pod", "err", err)
			return 2 * time.Second, false
		}
		log.Info("pod removed")
		return 0, true
	case pod.DeletionTimestamp != nil:
		return a.syncDeleting(ctx, pod, rt, st), false
	case st.terminal || isTerminal(pod.Status.Phase):
		st.terminal = true
		a.workers.releaseHostPorts(pod.UID)
		if len(rt.running()) > 0 || rt.ready != nil {
			a.killPod(ctx, pod, rt, gracePeriod(pod), "pod finished")
			if rt, err = a.podRuntime(ctx, pod.UID); err != nil {
				return 2 * time.Second, false
			}
		}
		a.probes.removePod(pod.UID)
		a.status.set(pod, a.podStatus(pod, rt, st))
		return 0, false
	}

	deadline, past := a.failPastDeadline(pod, st) // deadline.go
	if past {
		a.status.set(pod, a.podStatus(pod, rt, st))
		return 100 * time.Millisecond, false // kill the containers on the next pass
	}
	if msg, bad := forbiddenSysctl(pod); bad {
		// The kubelet's admission: the pod fails without running.
		st.terminal = true
		st.rejectReason, st.rejectMessage = reasonSysctlForbidden, "Pod was rejected: "+msg
		log.Info("pod rejected", "reason", st.rejectReason, "message", msg)
		a.events.podEvent(pod, corev1.EventTypeWarning, st.rejectReason, msg)
		a.status.set(pod, a.podStatus(pod, rt, st))
		return 0, false
	}
	// A pod running already (the agent restarted) keeps its ports.
	if held, ok := a.workers.admitHostPorts(pod); !ok && rt.ready == nil && len(rt.running()) == 0 {
		st.terminal = true
		st.rejectReason, st.rejectMessage = reasonNodePorts, "Pod was rejected: "+messageNodePorts
		log.Info("pod rejected", "reason", st.rejectReason, "conflict", held)
		a.events.podEvent(pod, corev1.EventTypeWarning, st.rejectReason, messageNodePorts)
		a.status.set(pod, a.podStatus(pod, rt, st))
		return 0, false
	}
	if err := a.volumes.setup(ctx, pod); err != nil {
		if msg := err.Error(); msg != st.volumeErr {
			a.events.podEvent(pod, corev1.EventTypeWarning, "FailedMount", msg)
			st.volumeErr = msg
		}
		a.status.set(pod, a.podStatus(pod, rt, st))
		return 2 * time.Second, false
	}
	st.volumeErr = ""

	requeue := time.Duration(0)
	if rt.ready == nil {
		d, ok := a.ensureSandbox(ctx, pod, rt, st)
		if !ok {
			a.status.set(pod, a.podStatus(pod, rt, st))
			return d, false
		}
		if rt, err = a.podRuntime(ctx, pod.UID); err != nil || rt.ready == nil {
			return time.Second, false
		}
	}
	if err := a.writeHostFiles(pod, rt.podIP()); err != nil {
		log.Warn("write /etc/hosts and resolv.conf", "err", err)
	}
	// Containers still running in an older sandbox are stale.
	for _, c := range rt.running() {
		if sandboxOfContainer(c) != rt.ready.Id {
			_ = a.cfg.Runtime.StopContainer(ctx, c.Id, 0)
		}
	}

	initDone, d := a.syncInitContainers(ctx, pod, rt, st)
	requeue = minPositive(requeue, d)
	if initDone {
		d = a.syncContainers(ctx, pod, rt, st)
		requeue = minPositive(requeue, d)
	}
	requeue = minPositive(requeue, a.syncEphemeralContainers(ctx, pod, rt, st)) // ephemeral.go
	a.gcContainers(ctx, rt)
	if rt2, err := a.podRuntime(ctx, pod.UID); err == nil {
		rt = rt2
	}
	requeue = minPositive(requeue, deadline)
	status := a.podStatus(pod, rt, st)
	a.probes.sync(pod, rt)
	if isTerminal(status.Phase) {
		st.terminal = true
		requeue = 100 * time.Millisecond // stop the sandbox on the next pass
	}
	a.status.set(pod, status)
	return requeue, false
}

// ensureSandbox creates the pod's sandbox (network namespace and IP,
// cgroup), with back-off after failures.
func (a *Agent) ensureSandbox(ctx context.Context, pod *corev1.Pod, rt *podRuntime, st *podState) (time.Duration, bool) {
	if !pod.Spec.HostNetwork && a.PodCIDR() == "" {
		// The master has not assigned the node's podCIDR yet.
		return 500 * time.Millisecond, false
	}
	if st.sandboxFailures > 0 {
		wait := a.backoffs.delay(st.sandboxFailures+1) - time.Since(st.lastSandboxFail)
		if wait > 0 {
			return wait, false
		}
	}
	// Stale sandboxes (not ready) are removed once a new one runs.
	cfg, err := a.sandboxConfig(pod, uint32(len(rt.sandboxes)))
	if err != nil {
		a.events.podEvent(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", err.Error())
		return 5 * time.Second, false
	}
	start := time.Now()
	id, err := a.cfg.Runtime.RunPodSandbox(ctx, cfg, runtimeClass(pod))
	if err != nil {
		st.sandboxFailures++
		st.lastSandboxFail = time.Now()
		a.events.podEvent(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: "+err.Error())
		return a.backoffs.delay(st.sandboxFailures + 1), false
	}
	st.sandboxFailures = 0
	for _, old := range rt.sandboxes {
		_ = a.cfg.Runtime.StopPodSandbox(ctx, old.Id)
	}
	a.log.Debug("sandbox created", "pod", pod.Namespace+"/"+pod.Name, "sandbox", id, "took", time.Since(start))
	return 0, true
}

// syncInitContainers runs init containers one at a time, in order. It
// reports whether all of them succeeded.
func (a *Agent) syncInitContainers(ctx context.Context, pod *corev1.Pod, rt *podRuntime, st *podState) (bool, time.Duration) {
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cur := rt.latest(c.Name)
		if cur != nil && cur.State == runtimeapi.ContainerState_CONTAINER_EXITED && cur.ExitCode == 0 {
			continue // done
		}
		// Once the regular containers have started, init containers are
		// not run again (a runtime GC may have removed them).
		if cur == nil && anyStarted(pod, rt) {
			continue
		}
		switch {
		case cur == nil:
			return false, a.startContainer(ctx, pod, c, 0, rt, st, true)
		case cur.State == runtimeapi.ContainerState_CONTAINER_CREATED:
			return false, a.startCreated(ctx, pod, c, cur, st)
		case cur.State == runtimeapi.ContainerState_CONTAINER_RUNNING:
			return false, 0
		case sandboxOfContainer(cur) != rt.ready.Id:
			return false, a.startContainer(ctx, pod, c, attemptOf(cur)+1, rt, st, true)
		default: // exited with an error
			if pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
				return false, 0 // the pod fails
			}
			return false, a.restartContainer(ctx, pod, c, cur, rt, st, true)
		}
	}
	return true, 0
}

// anyStarted reports whether a regular container of the pod ever ran.
func anyStarted(pod *corev1.Pod, rt *podRuntime) bool {
	for _, c := range pod.Spec.Containers {
		if rt.latest(c.Name) != nil {
			return true
		}
	}
	return false
}

// syncContainers starts, restarts (restartPolicy, back-off) and kills
// (liveness and startup probes) the regular containers.
func (a *Agent) syncContainers(ctx context.Context, pod *corev1.Pod, rt *podRuntime, st *podState) time.Duration {
	var (
		mu      sync.Mutex
		requeue time.Duration
		wg      sync.WaitGroup
	)
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := a.syncContainer(ctx, pod, c, rt, st)
			mu.Lock()
			requeue = minPositive(requeue, d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return requeue
}

func (a *Agent) syncContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, rt *podRuntime, st *podState) time.Duration {
	cur := rt.latest(c.Name)
	switch {
	case cur == nil:
		return a.startContainer(ctx, pod, c, 0, rt, st, false)
	case cur.State == runtimeapi.ContainerState_CONTAINER_CREATED:
		return a.startCreated(ctx, pod, c, cur, st)
	case cur.State == runtimeapi.ContainerState_CONTAINER_RUNNING:
		if reason := a.probes.killReason(pod.UID, c.Name, cur.Id); reason != "" {
			a.events.containerEvent(pod, c.Name, corev1.EventTypeNormal, "Killing",
				fmt.Sprintf("Container %s %s, will be restarted", c.Name, reason))
			a.stopContainer(ctx, pod, c, cur.Id, gracePeriod(pod))
			return 50 * time.Millisecond
		}
		return 0
	case sandboxOfContainer(cur) != rt.ready.Id:
		if shouldRestart(pod.Spec.RestartPolicy, cur.ExitCode) {
			return a.startContainer(ctx, pod, c, attemptOf(cur)+1, rt, st, false)
		}
		return 0
	default: // exited
		if !shouldRestart(pod.Spec.RestartPolicy, cur.ExitCode) {
			return 0
		}
		return a.restartContainer(ctx, pod, c, cur, rt, st, false)
	}
}

func shouldRestart(policy corev1.RestartPolicy, exitCode int32) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	}
	return true
}

// restartContainer starts the next instance of an exited container once
// its CrashLoopBackOff delay has passed.
func (a *Agent) restartContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, cur *runtimeapi.ContainerStatus, rt *podRuntime, st *podState, isInit bool) time.Duration {
	next := attemptOf(cur) + 1
	finished := time.Unix(0, cur.FinishedAt)
	// An instance that failed to start (StartError) never ran: it goes
	// through the back-off like one that crashed at once. (Measured from
	// a zero StartedAt it would look 56 years old and restart at once,
	// forever, every sync.)
	var ran time.Duration
	if cur.StartedAt > 0 {
		ran = finished.Sub(time.Unix(0, cur.StartedAt))
	}
	delay := a.backoffs.containerDelay(int(next), ran)
	if wait := time.Until(finished.Add(delay)); wait > 0 {
		st.waiting[c.Name] = &corev1.ContainerStateWaiting{
			Reason:  "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", delay.Round(time.Second), c.Name, pod.Name, pod.Namespace, pod.UID),
		}
		if !st.backoffEvented[cur.Id] {
			st.backoffEvented[cur.Id] = true
			a.events.containerEvent(pod, c.Name, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container "+c.Name+" in pod "+pod.Name+"_"+pod.Namespace+"("+string(pod.UID)+")")
		}
		return wait
	}
	return a.startContainer(ctx, pod, c, next, rt, st, isInit)
}

// startCreated starts a container that was created but not started (the
// agent stopped in between).
func (a *Agent) startCreated(ctx context.Context, pod *corev1.Pod, c *corev1.Container, cur *runtimeapi.ContainerStatus, st *podState) time.Duration {
	if err := a.cfg.Runtime.StartContainer(ctx, cur.Id); err != nil {
		st.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		a.events.containerEvent(pod, c.Name, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		_ = a.cfg.Runtime.RemoveContainer(ctx, cur.Id)
		return time.Second
	}
	delete(st.waiting, c.Name)
	a.events.containerEvent(pod, c.Name, corev1.EventTypeNormal, "Started", "Started container "+c.Name)
	return 0
}

// syncDeleting kills a pod being deleted, reports its final status and
// deletes it from the API for good (grace period 0, UID precondition).
func (a *Agent) syncDeleting(ctx context.Context, pod *corev1.Pod, rt *podRuntime, st *podState) time.Duration {
	if !st.killed {
		a.killPod(ctx, pod, rt, gracePeriod(pod), "pod deleted")
		st.killed = true
		if r, err := a.podRuntime(ctx, pod.UID); err == nil {
			rt = r
		}
	}
	a.probes.removePod(pod.UID)
	status := a.podStatus(pod, rt, st)
	if !isTerminal(status.Phase) {
		status.Phase = corev1.PodFailed
		if allSucceeded(status.ContainerStatuses) && pod.Spec.RestartPolicy != corev1.RestartPolicyAlways {
			status.Phase = corev1.PodSucceeded
		}
	}
	a.status.set(pod, status)
	if err := a.status.flush(ctx, pod.UID); err != nil && !apierrors.IsNotFound(err) {
		a.log.Warn("final status", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
	zero := int64(0)
	uid := pod.UID
	err := a.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) {
		a.log.Warn("delete pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		return 2 * time.Second
	}
	// The informer's delete event ends the worker.
	return 2 * time.Second
}

func allSucceeded(cs []corev1.ContainerStatus) bool {
	for _, c := range cs {
		if c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 {
			return false
		}
	}
	return len(cs) > 0
}

func isTerminal(p corev1.PodPhase) bool { return p == corev1.PodSucceeded || p == corev1.PodFailed }

// gracePeriod is how long a pod's containers get between SIGTERM and
// SIGKILL: the deletion's grace period, else the pod's.
func gracePeriod(pod *corev1.Pod) int64 {
	if pod.DeletionGracePeriodSeconds != nil {
		return *pod.DeletionGracePeriodSeconds
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return corev1.DefaultTerminationGracePeriodSeconds
}

// killPod stops every running container of the pod in parallel (preStop
// hook, then SIGTERM through StopContainer with the grace period left) and
// then its sandboxes.
func (a *Agent) killPod(ctx context.Context, pod *corev1.Pod, rt *podRuntime, grace int64, why string) {
	specs := map[string]*corev1.Container{}
	for i := range pod.Spec.InitContainers {
		specs[pod.Spec.InitContainers[i].Name] = &pod.Spec.InitContainers[i]
	}
	for i := range pod.Spec.Containers {
		specs[pod.Spec.Containers[i].Name] = &pod.Spec.Containers[i]
	}
	var wg sync.WaitGroup
	for _, c := range rt.running() {
		name := c.GetMetadata().GetName()
		spec := specs[name]
		if spec == nil {
			spec = &corev1.Container{Name: name}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.events.containerEvent(pod, name, corev1.EventTypeNormal, "Killing", "Stopping container "+name)
			a.stopContainer(ctx, pod, spec, c.Id, grace)
		}()
	}
	wg.Wait()
	for _, sb := range rt.sandboxes {
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			if err := a.cfg.Runtime.StopPodSandbox(ctx, sb.Id); err != nil {
				a.log.Warn("stop sandbox", "pod", pod.Namespace+"/"+pod.Name, "why", why, "err", err)
			}
		}
	}
}

// stopContainer runs the preStop hook, then stops the container with what
// is left of the grace period.
func (a *Agent) stopContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, grace int64) {
	start := time.Now()
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && grace > 0 {
		hctx, cancel := context.WithTimeout(ctx, time.Duration(grace)*time.Second)
		if msg, err := a.runHandler(hctx, pod, c, id, c.Lifecycle.PreStop); err != nil {
			a.events.containerEvent(pod, c.Name, corev1.EventTypeWarning, "FailedPreStopHook",
				fmt.Sprintf("PreStopHook failed: %v %s", err, msg))
		}
		cancel()
	}
	left := grace - int64(time.Since(start)/time.Second)
	if grace > 0 && left < 1 {
		left = 1
	}
	if left < 0 {
		left = 0
	}
	if err := a.cfg.Runtime.StopContainer(ctx, id, left); err != nil && !isNotFound(err) {
		a.log.Warn("stop container", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "err", err)
	}
}

// gcContainers removes exited instances older than the previous one of
// each container (the previous one stays for `kubectl logs --previous`).
func (a *Agent) gcContainers(ctx context.Context, rt *podRuntime) {
	for _, list := range rt.containers {
		for i, c := range list {
			if i < 2 || c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
				continue
			}
			if err := a.cfg.Runtime.RemoveContainer(ctx, c.Id); err != nil && !isNotFound(err) {
				a.log.Warn("remove old container", "container", c.Id, "err", err)
			}
		}
	}
}

// removePod removes the pod's sandboxes, containers, volumes and logs.
func (a *Agent) removePod(ctx context.Context, uid types.UID, namespace, name string) error {
	rt, err := a.podRuntime(ctx, uid)
	if err != nil {
		return err
	}
	for _, list := range rt.containers {
		for _, c := range list {
			if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
				_ = a.cfg.Runtime.StopContainer(ctx, c.Id, 0)
			}
			if err := a.cfg.Runtime.RemoveContainer(ctx, c.Id); err != nil && !isNotFound(err) {
				return fmt.Errorf("remove container %s: %w", c.Id, err)
			}
		}
	}
	for _, sb := range rt.sandboxes {
		if err := a.cfg.Runtime.StopPodSandbox(ctx, sb.Id); err != nil && !isNotFound(err) {
			return fmt.Errorf("stop sandbox %s: %w", sb.Id, err)
		}
		if err := a.cfg.Runtime.RemovePodSandbox(ctx, sb.Id); err != nil && !isNotFound(err) {
			return fmt.Errorf("remove sandbox %s: %w", sb.Id, err)
		}
	}
	if err := a.volumes.teardown(uid); err != nil {
		return err
	}
	if namespace != "" && name != "" {
		if err := a.removeLogDir(a.cfg.podLogDir(namespace, name, string(uid))); err != nil {
			return err
		}
	}
	a.backoffs.forget(uid)
	return nil
}

// removeLogDir removes a gone pod's log directory, or hands it to the
// log shipper, which removes it once its files are shipped.
func (a *Agent) removeLogDir(dir string) error {
	if a.cfg.LogShipper != nil {
		a.cfg.LogShipper.ReleaseLogDir(dir)
		return nil
	}
	return removeAllNoMounts(dir)
}

// PodLabels are the labels of the pod namespace/name if its UID is uid
// (nil when the pod is not known): the log shipper's record fields.
func (a *Agent) PodLabels(namespace, name, uid string) map[string]string {
	if a.pods == nil {
		return nil
	}
	pod, err := a.pods.Pods(namespace).Get(name)
	if err != nil || string(pod.UID) != uid {
		return nil
	}
	return pod.Labels
}

func minPositive(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	case a < b:
		return a
	}
	return b
}
