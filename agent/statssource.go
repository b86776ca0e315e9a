package agent

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/agent/stats"
)

// statsSource tells the stats collector what runs on this node: it lists
// the runtime's running containers once per collection, and asks the
// runtime for a container's cgroup, init PID and writable layer once per
// container (cached by ID).
type statsSource struct {
	a     *Agent
	start time.Time

	mu    sync.Mutex
	infos map[string]*containerInfo

	// Counts of the last listing, for kubelet_running_pods and
	// kubelet_running_containers.
	runningPods, runningContainers atomic.Int64
}

// containerInfo is what a container's verbose status says about where it
// runs; none of it changes while the container runs.
type containerInfo struct {
	cgroup, writableLayer string
	pid                   int
	started               time.Time
	image                 string
	restarts              uint32
}

func newStatsSource(a *Agent) *statsSource {
	return &statsSource{a: a, start: time.Now(), infos: map[string]*containerInfo{}}
}

// Targets lists the pods with a running container or a ready sandbox.
func (s *statsSource) Targets(ctx context.Context) (stats.Targets, error) {
	a := s.a
	t := stats.Targets{NodeName: a.cfg.NodeName, DataDir: a.cfg.DataDir, StartTime: s.start}
	running := &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}
	cs, err := a.cfg.Runtime.ListContainers(ctx, running)
	if err != nil {
		return t, fmt.Errorf("list containers: %w", err)
	}
	ready := &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}
	sbs, err := a.cfg.Runtime.ListPodSandbox(ctx, ready)
	if err != nil {
		return t, fmt.Errorf("list sandboxes: %w", err)
	}
	byPod := map[string][]*runtimeapi.Container{}
	for _, c := range cs {
		uid := c.Labels[labelPodUID]
		byPod[uid] = append(byPod[uid], c)
	}
	sandboxOf := map[string]*runtimeapi.PodSandbox{}
	for _, sb := range sbs {
		uid := sb.GetMetadata().GetUid()
		if old := sandboxOf[uid]; old == nil || sb.CreatedAt > old.CreatedAt {
			sandboxOf[uid] = sb
		}
	}
	seen := map[string]bool{}
	for _, pod := range s.pods() {
		uid := string(pod.UID)
		containers, sb := byPod[uid], sandboxOf[uid]
		if len(containers) == 0 && sb == nil {
			continue
		}
		pt := stats.PodTarget{Namespace: pod.Namespace, Name: pod.Name, UID: uid, HostNetwork: pod.Spec.HostNetwork}
		switch {
		case pod.Status.StartTime != nil:
			pt.StartTime = pod.Status.StartTime.Time
		case sb != nil:
			pt.StartTime = time.Unix(0, sb.CreatedAt)
		}
		for _, c := range containers {
			info := s.info(ctx, c.Id)
			seen[c.Id] = true
			if info == nil {
				continue // gone meanwhile
			}
			name := c.GetMetadata().GetName()
			image := specImage(pod, name)
			if image == "" {
				image = info.image
			}
			ct := stats.ContainerTarget{
				Name: name, ID: c.Id, Image: image, StartTime: info.started, Restarts: info.restarts,
				Cgroup: info.cgroup, WritableLayer: info.writableLayer,
				LogDir: filepath.Join(a.cfg.podLogDir(pod.Namespace, pod.Name, uid), name),
			}
			if pt.NetPID == 0 {
				pt.NetPID = info.pid
			}
			if pt.Cgroup == "" && info.cgroup != "" {
				pt.Cgroup = path.Dir(info.cgroup)
			}
			pt.Containers = append(pt.Containers, ct)
		}
		if pt.Cgroup == "" {
			pt.Cgroup = podCgroupParent(pod)
		}
		pt.Volumes = s.volumes(pod)
		t.Pods = append(t.Pods, pt)
	}
	s.mu.Lock()
	for id := range s.infos {
		if !seen[id] {
			delete(s.infos, id)
		}
	}
	s.mu.Unlock()
	s.runningPods.Store(int64(len(sandboxOf)))
	s.runningContainers.Store(int64(len(cs)))
	return t, nil
}

// pods are the pods this node runs: the API's (mirror pods replaced by
// their static pods) and the static pods without a mirror yet.
func (s *statsSource) pods() []*corev1.Pod {
	var out []*corev1.Pod
	have := map[string]bool{}
	for _, obj := range s.a.podInformer.GetStore().List() {
		p, ok := obj.(*corev1.Pod)
		if !ok || isMirrorPod(p) || p.Spec.NodeName != s.a.cfg.NodeName {
			continue
		}
		have[string(p.UID)] = true
		out = append(out, p)
	}
	st := s.a.static
	st.mu.Lock()
	for uid, p := range st.pods {
		if !have[string(uid)] {
			out = append(out, p)
		}
	}
	st.mu.Unlock()
	return out
}

// info returns a container's cached verbose status, nil when it is gone.
func (s *statsSource) info(ctx context.Context, id string) *containerInfo {
	s.mu.Lock()
	info := s.infos[id]
	s.mu.Unlock()
	if info != nil {
		return info
	}
	resp, err := s.a.cfg.Runtime.ContainerStatus(ctx, id, true)
	if err != nil || resp.GetStatus() == nil {
		return nil
	}
	st := resp.Status
	info = &containerInfo{
		cgroup: resp.Info["cgroup"], writableLayer: resp.Info["writableLayer"],
		image: st.GetImage().GetImage(), restarts: attemptOf(st),
	}
	if info.image == "" {
		info.image = st.ImageRef
	}
	if st.StartedAt > 0 {
		info.started = time.Unix(0, st.StartedAt)
	}
	if pid, err := strconv.Atoi(resp.Info["pid"]); err == nil {
		info.pid = pid
	}
	if info.writableLayer != "" {
		if _, err := os.Stat(info.writableLayer); err != nil {
			info.writableLayer = ""
		}
	}
	s.mu.Lock()
	s.infos[id] = info
	s.mu.Unlock()
	return info
}

// volumes lists the pod's volume directories the kubelet reports:
// persistentVolumeClaim, emptyDir, configMap, secret, downwardAPI and
// projected (not hostPath: the node's own files).
func (s *statsSource) volumes(pod *corev1.Pod) []stats.VolumeTarget {
	var out []stats.VolumeTarget
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		vt := stats.VolumeTarget{Name: v.Name}
		switch {
		case v.PersistentVolumeClaim != nil:
			dir, ok := s.a.volumes.claimDir(pod.UID, v.Name)
			if !ok {
				continue
			}
			vt.Dir, vt.ClaimNamespace, vt.ClaimName = dir, pod.Namespace, v.PersistentVolumeClaim.ClaimName
		case v.EmptyDir != nil, v.ConfigMap != nil, v.Secret != nil, v.DownwardAPI != nil, v.Projected != nil:
			vt.Dir = s.a.volumes.volumeDir(pod.UID, v)
		default:
			continue
		}
		if _, err := os.Stat(vt.Dir); err != nil {
			continue // not set up (yet)
		}
		out = append(out, vt)
	}
	return out
}

// specImage is the image the pod's spec names for container name (what
// cAdvisor's image label shows), "" if none does.
func specImage(pod *corev1.Pod, name string) string {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return c.Image
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return c.Image
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return c.Image
		}
	}
	return ""
}
