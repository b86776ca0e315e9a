package agent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Ephemeral containers (kubectl debug) run in the pod's sandbox: its
// network, IPC and UTS namespaces, and, with a targetContainerName, the
// PID namespace of that container, so that they see its processes. They
// start once and are never restarted.

// containerTypeEphemeral is the container type annotation of ephemeral
// containers (the kubelet's).
const containerTypeEphemeral = "ephemeral"

// ephemeralSpec returns the ephemeral container named name, or nil.
func ephemeralSpec(pod *corev1.Pod, name string) *corev1.EphemeralContainer {
	for i := range pod.Spec.EphemeralContainers {
		if pod.Spec.EphemeralContainers[i].Name == name {
			return &pod.Spec.EphemeralContainers[i]
		}
	}
	return nil
}

// syncEphemeralContainers starts the ephemeral containers that never ran.
func (a *Agent) syncEphemeralContainers(ctx context.Context, pod *corev1.Pod, rt *podRuntime, st *podState) time.Duration {
	var requeue time.Duration
	for i := range pod.Spec.EphemeralContainers {
		ec := &pod.Spec.EphemeralContainers[i]
		if rt.latest(ec.Name) != nil {
			continue // ran (or runs): never again
		}
		if t := ec.TargetContainerName; t != "" {
			if cur := rt.latest(t); cur == nil || cur.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
				st.waiting[ec.Name] = &corev1.ContainerStateWaiting{Reason: "ContainerCreating",
					Message: fmt.Sprintf("waiting for target container %q to run", t)}
				requeue = minPositive(requeue, time.Second)
				continue
			}
		}
		c := (*corev1.Container)(&ec.EphemeralContainerCommon)
		requeue = minPositive(requeue, a.startContainer(ctx, pod, c, 0, rt, st, false))
	}
	return requeue
}

// ephemeralConfig marks cfg as an ephemeral container's and, with a
// target, puts it in the target's PID namespace.
func ephemeralConfig(cfg *runtimeapi.ContainerConfig, ec *corev1.EphemeralContainer, rt *podRuntime) error {
	cfg.Annotations[annContainerType] = containerTypeEphemeral
	if ec.TargetContainerName == "" {
		return nil
	}
	cur := rt.latest(ec.TargetContainerName)
	if cur == nil || cur.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return fmt.Errorf("target container %q is not running", ec.TargetContainerName)
	}
	sc := cfg.GetLinux().GetSecurityContext()
	if sc == nil || sc.NamespaceOptions == nil {
		return fmt.Errorf("container %s has no namespace options", ec.Name)
	}
	sc.NamespaceOptions.Pid = runtimeapi.NamespaceMode_TARGET
	sc.NamespaceOptions.TargetId = cur.Id
	return nil
}
