package agent

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Labels and annotations the agent puts on sandboxes and containers (the
// kubelet's names, so tools that know them read Skiff's runtime state). A
// restarted agent finds its pods' containers and their restart counts by
// them.
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"

	annRestartCount           = "io.kubernetes.container.restartCount"
	annTerminationMessagePath = "io.kubernetes.container.terminationMessagePath"
	annContainerType          = "io.kubernetes.container.type" // "init" or "regular"
	annPodGracePeriod         = "io.kubernetes.pod.terminationGracePeriod"
	annTerminationLog         = "skiff.io/termination-log" // host path of the termination message file
)

// podRuntime is what the runtime holds for one pod.
type podRuntime struct {
	// sandboxes, newest first.
	sandboxes []*runtimeapi.PodSandbox
	// ready is the newest ready sandbox, if any, and its status.
	ready       *runtimeapi.PodSandbox
	readyStatus *runtimeapi.PodSandboxStatus
	// containers by name, newest (highest attempt) first, across every
	// sandbox of the pod.
	containers map[string][]*runtimeapi.ContainerStatus
}

// latest is the newest instance of container name, or nil.
func (r *podRuntime) latest(name string) *runtimeapi.ContainerStatus {
	if cs := r.containers[name]; len(cs) > 0 {
		return cs[0]
	}
	return nil
}

// previous is the instance before the newest, or nil.
func (r *podRuntime) previous(name string) *runtimeapi.ContainerStatus {
	if cs := r.containers[name]; len(cs) > 1 {
		return cs[1]
	}
	return nil
}

// lastTerminated is the run `kubectl logs --previous` shows: the
// kubelet's lastState. That is the newest instance when it exited and is
// to run again (its next run has not started: the pod waits in
// CrashLoopBackOff), else the exited instance before the newest.
func (r *podRuntime) lastTerminated(name string, restarts func(exitCode int32) bool) *runtimeapi.ContainerStatus {
	if cur := r.latest(name); cur != nil && cur.State == runtimeapi.ContainerState_CONTAINER_EXITED && restarts(cur.ExitCode) {
		return cur
	}
	if prev := r.previous(name); prev != nil && prev.State == runtimeapi.ContainerState_CONTAINER_EXITED {
		return prev
	}
	return nil
}

// running lists the running containers of the pod.
func (r *podRuntime) running() []*runtimeapi.ContainerStatus {
	var out []*runtimeapi.ContainerStatus
	for _, cs := range r.containers {
		for _, c := range cs {
			if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
				out = append(out, c)
			}
		}
	}
	return out
}

// podIP is the ready sandbox's address ("" for host-network pods).
func (r *podRuntime) podIP() string {
	return r.readyStatus.GetNetwork().GetIp()
}

func isNotFound(err error) bool {
	return status.Code(err) == codes.NotFound
}

// podRuntime lists the sandboxes and containers of pod uid with their
// statuses.
func (a *Agent) podRuntime(ctx context.Context, uid types.UID) (*podRuntime, error) {
	sel := map[string]string{labelPodUID: string(uid)}
	sbs, err := a.cfg.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	sort.SliceStable(sbs, func(i, j int) bool { return sbs[i].CreatedAt > sbs[j].CreatedAt })
	r := &podRuntime{sandboxes: sbs, containers: map[string][]*runtimeapi.ContainerStatus{}}
	for _, sb := range sbs {
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			st, err := a.cfg.Runtime.PodSandboxStatus(ctx, sb.Id, false)
			if isNotFound(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("sandbox status: %w", err)
			}
			if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
				continue
			}
			r.ready, r.readyStatus = sb, st.Status
			break
		}
	}
	cs, err := a.cfg.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	sandboxOf := map[string]string{}
	for _, c := range cs {
		st, err := a.cfg.Runtime.ContainerStatus(ctx, c.Id, false)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("container status: %w", err)
		}
		name := c.GetMetadata().GetName()
		sandboxOf[c.Id] = c.PodSandboxId
		r.containers[name] = append(r.containers[name], st.Status)
	}
	for _, list := range r.containers {
		sort.SliceStable(list, func(i, j int) bool {
			ai, aj := attemptOf(list[i]), attemptOf(list[j])
			if ai != aj {
				return ai > aj
			}
			return list[i].CreatedAt > list[j].CreatedAt
		})
	}
	// Remember the sandbox of each status (ContainerStatus has none).
	for _, list := range r.containers {
		for _, c := range list {
			if c.Annotations == nil {
				c.Annotations = map[string]string{}
			} else {
				c.Annotations = copyMap(c.Annotations)
			}
			c.Annotations[annSandboxID] = sandboxOf[c.Id]
		}
	}
	return r, nil
}

// annSandboxID is set on the statuses podRuntime returns, never on the
// runtime's containers.
const annSandboxID = "skiff.io/internal-sandbox-id"

func sandboxOfContainer(c *runtimeapi.ContainerStatus) string { return c.Annotations[annSandboxID] }

// attemptOf is the restart count of a container instance: its CRI
// metadata attempt, or the restartCount annotation.
func attemptOf(c *runtimeapi.ContainerStatus) uint32 {
	if c.GetMetadata() != nil && c.Metadata.Attempt > 0 {
		return c.Metadata.Attempt
	}
	if n, err := strconv.ParseUint(c.Annotations[annRestartCount], 10, 32); err == nil {
		return uint32(n)
	}
	return 0
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
