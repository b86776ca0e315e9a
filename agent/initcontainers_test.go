package agent

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func podCondition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func initPod(name string, policy corev1.RestartPolicy, main corev1.Container, inits ...corev1.Container) *corev1.Pod {
	p := pod(name, policy, main)
	for i := range inits {
		inits[i].Image = "present:1.0"
	}
	p.Spec.InitContainers = inits
	return p
}

// The statuses and conditions of the conformance tests "should invoke
// init containers on a RestartAlways pod" and "... RestartNever pod":
// succeeded init containers are Ready, Initialized is True (PodCompleted
// in a Succeeded pod).
func TestInitContainerStatusesWhenTheySucceed(t *testing.T) {
	h := newHarness(t)
	h.createPod(initPod("always", corev1.RestartPolicyAlways, ctr("run1"), ctr("init1", "exit=0"), ctr("init2", "exit=0")))
	h.createPod(initPod("never", corev1.RestartPolicyNever, ctr("run2", "exit=0"), ctr("init3", "exit=0"), ctr("init4", "exit=0")))
	for _, c := range []struct {
		name   string
		phase  corev1.PodPhase
		reason string
	}{{"always", corev1.PodRunning, ""}, {"never", corev1.PodSucceeded, "PodCompleted"}} {
		got := h.waitPod(c.name, string(c.phase), phaseIs(c.phase))
		if init := podCondition(got, corev1.PodInitialized); init == nil || init.Status != corev1.ConditionTrue || init.Reason != c.reason {
			t.Errorf("%s: Initialized = %+v, want True reason %q", c.name, init, c.reason)
		}
		if len(got.Status.InitContainerStatuses) != 2 {
			t.Fatalf("%s: %d init container statuses", c.name, len(got.Status.InitContainerStatuses))
		}
		for _, cs := range got.Status.InitContainerStatuses {
			if !cs.Ready || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
				t.Errorf("%s: init container %s: ready=%v state=%+v, want ready and exit 0", c.name, cs.Name, cs.Ready, cs.State)
			}
		}
	}
}

// "should not start app containers if init containers fail on a
// RestartAlways pod": the failing init container is restarted with
// back-off, the next one and the app container wait (PodInitializing),
// the pod stays Pending and Initialized names both init containers.
func TestFailingInitContainerRestartAlways(t *testing.T) {
	h := newHarness(t)
	h.createPod(initPod("initfail", corev1.RestartPolicyAlways, ctr("run1"), ctr("init1", "exit=1"), ctr("init2", "exit=0")))
	got := h.waitPod("initfail", "init1 restarted 3 times", func(p *corev1.Pod) error {
		if len(p.Status.InitContainerStatuses) != 2 {
			return fmt.Errorf("no init container statuses")
		}
		cs := p.Status.InitContainerStatuses[0]
		if cs.RestartCount < 3 || cs.LastTerminationState.Terminated == nil {
			return fmt.Errorf("%s", describe(p))
		}
		return nil
	})
	if got.Status.Phase != corev1.PodPending {
		t.Errorf("phase %s, want Pending", got.Status.Phase)
	}
	init := podCondition(got, corev1.PodInitialized)
	if init == nil || init.Status != corev1.ConditionFalse || init.Reason != "ContainersNotInitialized" ||
		init.Message != "containers with incomplete status: [init1 init2]" {
		t.Errorf("Initialized = %+v", init)
	}
	if w := got.Status.InitContainerStatuses[1].State.Waiting; w == nil || w.Reason != "PodInitializing" {
		t.Errorf("init2: %s", describe(got))
	}
	if w := cstatus(got, "run1").State.Waiting; w == nil || w.Reason != "PodInitializing" || cstatus(got, "run1").RestartCount != 0 {
		t.Errorf("run1: %s", describe(got))
	}
	if len(h.rt.ContainerIDs("run1")) != 0 || len(h.rt.ContainerIDs("init2")) != 0 {
		t.Errorf("a container after the failing init container started")
	}
}

// "should not start app containers and fail the pod if init containers
// fail on a RestartNever pod".
func TestFailingInitContainerRestartNever(t *testing.T) {
	h := newHarness(t)
	h.createPod(initPod("initfail", corev1.RestartPolicyNever, ctr("run1", "exit=0"), ctr("init1", "exit=0"), ctr("init2", "exit=1")))
	got := h.waitPod("initfail", "failed", phaseIs(corev1.PodFailed))
	init := podCondition(got, corev1.PodInitialized)
	if init == nil || init.Status != corev1.ConditionFalse || init.Reason != "ContainersNotInitialized" ||
		init.Message != "containers with incomplete status: [init2]" {
		t.Errorf("Initialized = %+v", init)
	}
	if ready := podCondition(got, corev1.PodReady); ready == nil || ready.Status != corev1.ConditionFalse || ready.Reason != "PodFailed" {
		t.Errorf("Ready = %+v", ready)
	}
	if len(got.Status.InitContainerStatuses) != 2 || !got.Status.InitContainerStatuses[0].Ready || got.Status.InitContainerStatuses[1].Ready {
		t.Errorf("init statuses: %s", describe(got))
	}
	if w := cstatus(got, "run1").State.Waiting; w == nil {
		t.Errorf("run1 not waiting: %s", describe(got))
	}
	if len(h.rt.ContainerIDs("run1")) != 0 {
		t.Errorf("app container started after a failed init container")
	}
}
