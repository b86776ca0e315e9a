package libcontainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/runtime"
)

// sandbox is a pod sandbox record.
type sandbox struct {
	ID             string                                  `json:"id"`
	Config         protoJSON[*runtimeapi.PodSandboxConfig] `json:"config"`
	RuntimeHandler string                                  `json:"runtimeHandler,omitempty"`
	CreatedAt      int64                                   `json:"createdAt"`
	Ready          bool                                    `json:"ready"`
	IPs            []string                                `json:"ips,omitempty"`
	// Namespace bind mounts; empty for the host's.
	NetNS string `json:"netns,omitempty"`
	IPCNS string `json:"ipcns,omitempty"`
	UTSNS string `json:"utsns,omitempty"`
	// Shm is the pod's /dev/shm (a tmpfs), empty with the host IPC.
	Shm    string `json:"shm,omitempty"`
	Cgroup string `json:"cgroup"`
	// NetworkDone: Network.SetUp succeeded and TearDown has not.
	NetworkDone bool `json:"networkDone,omitempty"`
}

func (sb *sandbox) config() *runtimeapi.PodSandboxConfig { return sb.Config.Msg }

func (r *Runtime) sandboxDir(id string) string { return filepath.Join(r.sandboxesDir, id) }

func (r *Runtime) saveSandbox(sb *sandbox) error {
	return writeRecord(filepath.Join(r.sandboxDir(sb.ID), "sandbox.json"), sb)
}

func (r *Runtime) loadSandbox(id string) (*sandbox, error) {
	b, err := os.ReadFile(filepath.Join(r.sandboxDir(id), "sandbox.json"))
	if err != nil {
		return nil, err
	}
	sb := &sandbox{}
	if err := json.Unmarshal(b, sb); err != nil {
		return nil, err
	}
	return sb, nil
}

// namespaceOptions of a sandbox config, never nil.
func namespaceOptions(cfg *runtimeapi.PodSandboxConfig) *runtimeapi.NamespaceOption {
	if o := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); o != nil {
		return o
	}
	return &runtimeapi.NamespaceOption{}
}

// RunPodSandbox creates the pod's namespaces, /dev/shm and cgroup, and
// connects it to the pod network.
func (r *Runtime) RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, runtimeHandler string) (_ string, retErr error) {
	if cfg.GetMetadata() == nil {
		return "", errors.New("sandbox config without metadata")
	}
	if runtimeHandler != "" {
		return "", fmt.Errorf("runtime handler %q: only the default handler is supported", runtimeHandler)
	}
	id := newID()
	dir := r.sandboxDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	sb := &sandbox{ID: id, Config: protoJSON[*runtimeapi.PodSandboxConfig]{cfg}, RuntimeHandler: runtimeHandler, CreatedAt: time.Now().UnixNano()}
	defer func() {
		if retErr != nil {
			if err := r.releaseSandbox(context.WithoutCancel(ctx), sb); err != nil {
				r.log.Warn("cleaning up a sandbox that failed to start", "id", id, "err", err)
			}
			_ = os.RemoveAll(dir)
		}
	}()

	ns := namespaceOptions(cfg)
	hostNet := ns.Network == runtimeapi.NamespaceMode_NODE
	var p nsPaths
	if !hostNet {
		p.net = filepath.Join(r.netnsDir, id)
		// A pod with the node's network has the node's hostname too.
		p.uts = filepath.Join(dir, "uts")
	}
	if ns.Ipc != runtimeapi.NamespaceMode_NODE {
		p.ipc = filepath.Join(dir, "ipc")
	}
	hostname := cfg.Hostname
	if hostname == "" {
		hostname = cfg.GetMetadata().GetName()
	}
	if err := createNamespaces(p, hostname); err != nil {
		return "", fmt.Errorf("sandbox namespaces: %w", err)
	}
	sb.NetNS, sb.IPCNS, sb.UTSNS = p.net, p.ipc, p.uts

	if p.ipc != "" {
		shm := filepath.Join(dir, "shm")
		if err := os.Mkdir(shm, 0o1777); err != nil {
			return "", err
		}
		if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
			return "", fmt.Errorf("pod /dev/shm: %w", err)
		}
		sb.Shm = shm
	}

	sb.Cgroup = r.podCgroup(cfg)
	if err := r.createPodCgroup(sb.Cgroup); err != nil {
		return "", err
	}
	if err := r.saveSandbox(sb); err != nil {
		return "", err
	}
	if !hostNet && r.cfg.Network != nil {
		ips, err := r.cfg.Network.SetUp(ctx, id, p.net, cfg)
		if err != nil {
			return "", fmt.Errorf("pod network: %w", err)
		}
		sb.IPs, sb.NetworkDone = ips, true
	}
	sb.Ready = true
	if err := r.saveSandbox(sb); err != nil {
		return "", err
	}
	r.mu.Lock()
	r.sandboxes[id] = sb
	r.mu.Unlock()
	r.log.Info("sandbox ready", "id", id, "pod", podName(cfg), "ips", sb.IPs)
	return id, nil
}

func podName(cfg *runtimeapi.PodSandboxConfig) string {
	m := cfg.GetMetadata()
	return m.GetNamespace() + "/" + m.GetName()
}

// podCgroup is the sandbox's cgroup path: its CgroupParent when absolute,
// else <CgroupRoot>/burstable/pod<uid>.
func (r *Runtime) podCgroup(cfg *runtimeapi.PodSandboxConfig) string {
	if p := cfg.GetLinux().GetCgroupParent(); path.IsAbs(p) {
		return path.Clean(p)
	}
	uid := cfg.GetMetadata().GetUid()
	if uid == "" {
		uid = cfg.GetMetadata().GetNamespace() + "_" + cfg.GetMetadata().GetName()
	}
	if r.cfg.CgroupRoot == runtime.CgroupRoot {
		return runtime.PodCgroupParent("Burstable", uid)
	}
	return path.Join(r.cfg.CgroupRoot, "burstable", "pod"+uid)
}

func cgroupManager(p string, res *cgroups.Resources) (cgroups.Manager, error) {
	if res == nil {
		res = &cgroups.Resources{}
	}
	res.SkipDevices = true
	return manager.New(&cgroups.Cgroup{Path: p, Resources: res})
}

func (r *Runtime) createPodCgroup(p string) error {
	res := &cgroups.Resources{}
	if r.cfg.PodPidsLimit > 0 && !r.host.controllerMissing("pids") {
		res.PidsLimit = &r.cfg.PodPidsLimit
	}
	m, err := cgroupManager(p, res)
	if err != nil {
		return fmt.Errorf("pod cgroup %s: %w", p, err)
	}
	if err := m.Apply(-1); err != nil {
		return fmt.Errorf("pod cgroup %s: %w", p, err)
	}
	if err := m.Set(res); err != nil {
		return fmt.Errorf("pod cgroup %s limits: %w", p, err)
	}
	return nil
}

func removeCgroup(p string) error {
	m, err := cgroupManager(p, nil)
	if err != nil {
		return err
	}
	return m.Destroy()
}

// releaseSandbox tears down the network and removes namespaces and /dev/shm.
// Each step is idempotent.
func (r *Runtime) releaseSandbox(ctx context.Context, sb *sandbox) error {
	var errs []error
	if sb.NetworkDone || (sb.NetNS != "" && r.cfg.Network != nil) {
		if err := r.cfg.Network.TearDown(ctx, sb.ID, sb.NetNS); err != nil {
			errs = append(errs, fmt.Errorf("network teardown: %w", err))
		} else {
			sb.NetworkDone = false
		}
	}
	for _, p := range []string{sb.NetNS, sb.IPCNS, sb.UTSNS} {
		if p != "" {
			if err := removeNamespace(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if sb.Shm != "" {
		if err := unix.Unmount(sb.Shm, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// StopPodSandbox stops the sandbox's containers and releases its network
// (IP) and namespaces. It can be called again.
func (r *Runtime) StopPodSandbox(ctx context.Context, id string) error {
	r.mu.Lock()
	sb, id, ok := lookupID(r.sandboxes, id)
	r.mu.Unlock()
	if !ok {
		return nil // already removed: stopping is idempotent
	}
	for _, c := range r.containersOf(id) {
		if err := r.StopContainer(ctx, c.ID, 0); err != nil {
			return fmt.Errorf("stop container %s: %w", c.ID, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.releaseSandbox(ctx, sb)
	sb.Ready = false
	if serr := r.saveSandbox(sb); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// RemovePodSandbox stops the sandbox, removes its containers, cgroup and
// state.
func (r *Runtime) RemovePodSandbox(ctx context.Context, id string) error {
	r.mu.Lock()
	sb, id, ok := lookupID(r.sandboxes, id)
	r.mu.Unlock()
	if !ok {
		return nil
	}
	if err := r.StopPodSandbox(ctx, id); err != nil {
		return err
	}
	for _, c := range r.containersOf(id) {
		if err := r.RemoveContainer(ctx, c.ID); err != nil {
			return fmt.Errorf("remove container %s: %w", c.ID, err)
		}
	}
	if err := removeCgroup(sb.Cgroup); err != nil {
		return fmt.Errorf("remove pod cgroup: %w", err)
	}
	if sb.Shm != "" {
		_ = unix.Unmount(sb.Shm, unix.MNT_DETACH)
	}
	if err := os.RemoveAll(r.sandboxDir(id)); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.sandboxes, id)
	r.mu.Unlock()
	r.log.Info("sandbox removed", "id", id, "pod", podName(sb.config()))
	return nil
}

func (r *Runtime) containersOf(sandboxID string) []*container {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*container
	for _, c := range r.containers {
		if c.SandboxID == sandboxID {
			out = append(out, c)
		}
	}
	return out
}

// PodSandboxStatus reports a sandbox's state and IPs.
func (r *Runtime) PodSandboxStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.PodSandboxStatusResponse, error) {
	r.mu.Lock()
	sb, _, ok := lookupID(r.sandboxes, id)
	r.mu.Unlock()
	if !ok {
		return nil, notFound("pod sandbox", id)
	}
	cfg := sb.config()
	st := &runtimeapi.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       cfg.GetMetadata(),
		State:          sandboxState(sb),
		CreatedAt:      sb.CreatedAt,
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: sb.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: namespaceOptions(cfg),
		}},
	}
	if len(sb.IPs) > 0 {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: sb.IPs[0]}
		for _, ip := range sb.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st}
	if verbose {
		resp.Info = map[string]string{"netns": sb.NetNS, "cgroup": sb.Cgroup}
	}
	return resp, nil
}

func sandboxState(sb *sandbox) runtimeapi.PodSandboxState {
	if sb.Ready {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// ListPodSandbox lists sandboxes matching filter.
func (r *Runtime) ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*runtimeapi.PodSandbox
	for _, sb := range r.sandboxes {
		cfg := sb.config()
		if filter != nil {
			if filter.Id != "" && !hasPrefix(sb.ID, filter.Id) {
				continue
			}
			if filter.State != nil && filter.State.State != sandboxState(sb) {
				continue
			}
			if !labelsMatch(cfg.GetLabels(), filter.LabelSelector) {
				continue
			}
		}
		out = append(out, &runtimeapi.PodSandbox{
			Id:             sb.ID,
			Metadata:       cfg.GetMetadata(),
			State:          sandboxState(sb),
			CreatedAt:      sb.CreatedAt,
			Labels:         cfg.GetLabels(),
			Annotations:    cfg.GetAnnotations(),
			RuntimeHandler: sb.RuntimeHandler,
		})
	}
	return out, nil
}

func hasPrefix(id, prefix string) bool {
	return len(id) >= len(prefix) && id[:len(prefix)] == prefix
}

func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
