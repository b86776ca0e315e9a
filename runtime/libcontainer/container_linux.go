package libcontainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/runtime/shim"
)

// container is a container record; its run state lives in the shim's files.
type container struct {
	ID        string                                 `json:"id"`
	SandboxID string                                 `json:"sandboxID"`
	Config    protoJSON[*runtimeapi.ContainerConfig] `json:"config"`
	ImageID   string                                 `json:"imageID"`
	// ImageRef is the reference the config named (tag or ID).
	ImageRef   string `json:"imageRef"`
	CreatedAt  int64  `json:"createdAt"`
	LogPath    string `json:"logPath"`
	CgroupPath string `json:"cgroupPath"`
	// Env, UID and GID of the init process, reused for exec.
	Process shim.Process `json:"process"`

	starting bool // StartContainer is under way (in memory only)
}

func (c *container) config() *runtimeapi.ContainerConfig { return c.Config.Msg }

func notFound(kind, id string) error {
	return status.Errorf(codes.NotFound, "%s %q not found", kind, id)
}

func (r *Runtime) dirOf(id string) string { return filepath.Join(r.containerDir, id) }

func (r *Runtime) saveContainer(c *container) error {
	return writeRecord(filepath.Join(r.dirOf(c.ID), "container.json"), c)
}

func (r *Runtime) loadContainer(id string) (*container, error) {
	b, err := os.ReadFile(filepath.Join(r.dirOf(id), "container.json"))
	if err != nil {
		return nil, err
	}
	c := &container{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, err
	}
	return c, nil
}

func (r *Runtime) getContainer(id string) (*container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, _, ok := lookupID(r.containers, id)
	if !ok {
		return nil, notFound("container", id)
	}
	return c, nil
}

// CreateContainer mounts the container's rootfs and prepares its
// libcontainer config and shim; StartContainer runs it.
func (r *Runtime) CreateContainer(ctx context.Context, sandboxID string, cc *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) (_ string, retErr error) {
	r.mu.Lock()
	sb, sandboxID, ok := lookupID(r.sandboxes, sandboxID)
	r.mu.Unlock()
	if !ok {
		return "", notFound("pod sandbox", sandboxID)
	}
	if !sb.Ready {
		return "", status.Errorf(codes.FailedPrecondition, "pod sandbox %s is not ready", sandboxID)
	}
	if cc.GetMetadata().GetName() == "" || cc.GetImage().GetImage() == "" {
		return "", status.Error(codes.InvalidArgument, "container config needs a name and an image")
	}
	id := newID()
	dir := r.dirOf(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	defer func() {
		if retErr != nil {
			if err := r.cfg.Images.UnmountRootfs(id, dir); err != nil {
				r.log.Warn("cleaning up a container that failed to be created", "id", id, "err", err)
			}
			_ = os.RemoveAll(dir)
		}
	}()
	imgCfg, img, err := r.cfg.Images.Config(cc.Image.Image)
	if err != nil {
		return "", status.Errorf(codes.NotFound, "image %s: %v", cc.Image.Image, err)
	}
	rootfs, err := r.cfg.Images.MountRootfs(img.ID, id, dir)
	if err != nil {
		return "", err
	}
	c := &container{
		ID:         id,
		SandboxID:  sandboxID,
		Config:     protoJSON[*runtimeapi.ContainerConfig]{cc},
		ImageID:    img.ID,
		ImageRef:   cc.Image.Image,
		CreatedAt:  time.Now().UnixNano(),
		LogPath:    r.logPath(sb, cc),
		CgroupPath: filepath.Join(sb.Cgroup, id),
	}
	lc, proc, err := r.buildConfig(c, sb, imgCfg, rootfs.Path)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "container %s: %v", cc.Metadata.Name, err)
	}
	c.Process = proc
	if err := shim.WriteConfig(dir, &shim.Config{
		ID:          id,
		Root:        r.runcRoot,
		Container:   lc,
		Process:     proc,
		LogPath:     c.LogPath,
		LogMaxSize:  r.cfg.LogMaxSize,
		LogMaxFiles: r.cfg.LogMaxFiles,
	}); err != nil {
		return "", err
	}
	if err := r.saveContainer(c); err != nil {
		return "", err
	}
	r.mu.Lock()
	r.containers[id] = c
	r.mu.Unlock()
	return id, nil
}

// logPath is where the container's CRI log goes: the sandbox's log
// directory joined with the config's log path, by default
// <data-dir>/pods/<ns>_<name>_<uid>/<container>/<attempt>.log.
func (r *Runtime) logPath(sb *sandbox, cc *runtimeapi.ContainerConfig) string {
	dir := sb.config().GetLogDirectory()
	if dir == "" {
		m := sb.config().GetMetadata()
		dir = filepath.Join(r.podLogDir, fmt.Sprintf("%s_%s_%s", m.GetNamespace(), m.GetName(), m.GetUid()))
	}
	p := cc.GetLogPath()
	if p == "" {
		p = filepath.Join(cc.GetMetadata().GetName(), fmt.Sprintf("%d.log", cc.GetMetadata().GetAttempt()))
	}
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// StartContainer starts a created container under a new shim.
func (r *Runtime) StartContainer(ctx context.Context, id string) error {
	r.mu.Lock()
	c, id, ok := lookupID(r.containers, id)
	if !ok {
		r.mu.Unlock()
		return notFound("container", id)
	}
	if c.starting {
		r.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "container %s is already starting", id)
	}
	c.starting = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		c.starting = false
		r.mu.Unlock()
	}()

	dir := r.dirOf(id)
	if st, err := shim.ReadState(dir); err != nil || st != nil {
		return status.Errorf(codes.FailedPrecondition, "container %s was already started", id)
	}
	if e, err := shim.ReadExit(dir); err != nil || e != nil {
		return status.Errorf(codes.FailedPrecondition, "container %s was already started", id)
	}
	// A leftover libcontainer state or cgroup from a crashed start would
	// make Create fail; clear them.
	if lc, err := libcontainer.Load(r.runcRoot, id); err == nil {
		_ = lc.Signal(unix.SIGKILL)
		_ = lc.Destroy()
	}
	_, err := shim.Start(ctx, r.cfg.Binary, dir)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		// Record the failure so that the container shows as exited.
		_ = shim.WriteExit(dir, &shim.Exit{ExitCode: 128, FinishedAt: time.Now().UTC(), Reason: "StartError", Message: err.Error()})
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// runState is what the shim files and processes say about a container.
type runState struct {
	state    runtimeapi.ContainerState
	started  *shim.State
	exit     *shim.Exit
	orphaned bool // the shim died but the container runs on
}

func (r *Runtime) runState(c *container) runState {
	dir := r.dirOf(c.ID)
	exit, _ := shim.ReadExit(dir)
	st, _ := shim.ReadState(dir)
	switch {
	case exit != nil:
		return runState{state: runtimeapi.ContainerState_CONTAINER_EXITED, started: st, exit: exit}
	case st == nil:
		return runState{state: runtimeapi.ContainerState_CONTAINER_CREATED}
	case shim.Alive(st):
		// The shim may have just written exit.json.
		if exit, _ := shim.ReadExit(dir); exit != nil {
			return runState{state: runtimeapi.ContainerState_CONTAINER_EXITED, started: st, exit: exit}
		}
		return runState{state: runtimeapi.ContainerState_CONTAINER_RUNNING, started: st}
	}
	if exit, _ := shim.ReadExit(dir); exit != nil {
		return runState{state: runtimeapi.ContainerState_CONTAINER_EXITED, started: st, exit: exit}
	}
	// The shim died without recording an exit: is the container still up?
	if lc, err := libcontainer.Load(r.runcRoot, c.ID); err == nil {
		if s, err := lc.Status(); err == nil && (s == libcontainer.Running || s == libcontainer.Paused) {
			return runState{state: runtimeapi.ContainerState_CONTAINER_RUNNING, started: st, orphaned: true}
		}
	}
	return runState{state: runtimeapi.ContainerState_CONTAINER_EXITED, started: st, exit: &shim.Exit{
		ExitCode: 255, Reason: "Unknown", Message: "the container's shim died without recording its exit",
		FinishedAt: time.Now().UTC(),
	}}
}

// StopContainer sends the stop signal (the config's, else SIGTERM), waits
// up to timeout seconds, then kills the container.
func (r *Runtime) StopContainer(ctx context.Context, id string, timeout int64) error {
	c, err := r.getContainer(id)
	if err != nil {
		return err
	}
	rs := r.runState(c)
	switch rs.state {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		// Never started: it can no longer be.
		return shim.WriteExit(r.dirOf(c.ID), &shim.Exit{ExitCode: 0, FinishedAt: time.Now().UTC(), Reason: "Completed", Message: "stopped before it started"})
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return nil
	}
	sig := unix.SIGTERM
	if s := stopSignal(c.config().GetStopSignal()); s != 0 {
		sig = s
	}
	if timeout > 0 {
		if err := r.signal(c, sig); err != nil {
			r.log.Warn("stop signal", "id", c.ID, "err", err)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Duration(timeout)*time.Second)
		done, err := r.waitExit(wctx, c, rs)
		cancel()
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
	}
	if err := r.signal(c, unix.SIGKILL); err != nil {
		r.log.Warn("kill", "id", c.ID, "err", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if done, err := r.waitExit(wctx, c, rs); !done {
		return fmt.Errorf("container %s did not exit after SIGKILL: %w", c.ID, err)
	}
	return nil
}

func (r *Runtime) signal(c *container, sig unix.Signal) error {
	lc, err := libcontainer.Load(r.runcRoot, c.ID)
	if err != nil {
		if errors.Is(err, libcontainer.ErrNotExist) {
			return nil // already destroyed by the shim: it exited
		}
		return err
	}
	err = lc.Signal(sig)
	if errors.Is(err, libcontainer.ErrNotRunning) {
		return nil
	}
	return err
}

// waitExit waits until the container has exited; for an orphan (no shim)
// it polls libcontainer and records the exit itself.
func (r *Runtime) waitExit(ctx context.Context, c *container, rs runState) (bool, error) {
	dir := r.dirOf(c.ID)
	if !rs.orphaned {
		e, err := shim.Wait(ctx, dir, rs.started)
		if e != nil {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		// The shim died meanwhile: fall through to polling.
	}
	for {
		lc, err := libcontainer.Load(r.runcRoot, c.ID)
		if err != nil {
			if errors.Is(err, libcontainer.ErrNotExist) {
				return true, nil
			}
			return false, err
		}
		if s, err := lc.Status(); err == nil && s == libcontainer.Stopped {
			_ = lc.Destroy()
			if e, _ := shim.ReadExit(dir); e == nil {
				_ = shim.WriteExit(dir, &shim.Exit{ExitCode: 137, FinishedAt: time.Now().UTC(), Reason: "Error", Message: "stopped without its shim"})
			}
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// RemoveContainer kills the container if it runs, and removes its rootfs,
// cgroup and state. Its log stays (the kubelet removes logs).
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	r.mu.Lock()
	c, id, ok := lookupID(r.containers, id)
	r.mu.Unlock()
	if !ok {
		return nil
	}
	if err := r.StopContainer(ctx, id, 0); err != nil {
		return err
	}
	if lc, err := libcontainer.Load(r.runcRoot, id); err == nil {
		if err := lc.Destroy(); err != nil {
			return fmt.Errorf("destroy container %s: %w", id, err)
		}
	}
	// The cgroup is normally gone with the libcontainer container.
	if err := removeCgroup(c.CgroupPath); err != nil {
		return fmt.Errorf("container %s cgroup: %w", id, err)
	}
	if err := r.cfg.Images.UnmountRootfs(id, r.dirOf(id)); err != nil {
		return fmt.Errorf("container %s rootfs: %w", id, err)
	}
	if err := os.RemoveAll(r.dirOf(id)); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.containers, id)
	r.mu.Unlock()
	return nil
}

// ListContainers lists containers matching filter.
func (r *Runtime) ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	r.mu.Lock()
	cs := make([]*container, 0, len(r.containers))
	for _, c := range r.containers {
		cs = append(cs, c)
	}
	r.mu.Unlock()
	var out []*runtimeapi.Container
	for _, c := range cs {
		cfg := c.config()
		if filter != nil {
			if filter.Id != "" && !hasPrefix(c.ID, filter.Id) {
				continue
			}
			if filter.PodSandboxId != "" && !hasPrefix(c.SandboxID, filter.PodSandboxId) {
				continue
			}
			if !labelsMatch(cfg.GetLabels(), filter.LabelSelector) {
				continue
			}
		}
		st := r.runState(c).state
		if filter != nil && filter.State != nil && filter.State.State != st {
			continue
		}
		out = append(out, &runtimeapi.Container{
			Id:           c.ID,
			PodSandboxId: c.SandboxID,
			Metadata:     cfg.GetMetadata(),
			Image:        &runtimeapi.ImageSpec{Image: c.ImageID, UserSpecifiedImage: cfg.GetImage().GetUserSpecifiedImage()},
			ImageRef:     c.ImageID,
			ImageId:      c.ImageID,
			State:        st,
			CreatedAt:    c.CreatedAt,
			Labels:       cfg.GetLabels(),
			Annotations:  cfg.GetAnnotations(),
		})
	}
	return out, nil
}

// ContainerStatus reports a container's state, exit code and reason.
func (r *Runtime) ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error) {
	c, err := r.getContainer(id)
	if err != nil {
		return nil, err
	}
	cfg := c.config()
	rs := r.runState(c)
	st := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    cfg.GetMetadata(),
		State:       rs.state,
		CreatedAt:   c.CreatedAt,
		Image:       &runtimeapi.ImageSpec{Image: c.ImageRef, UserSpecifiedImage: cfg.GetImage().GetUserSpecifiedImage()},
		ImageRef:    c.ImageID,
		ImageId:     c.ImageID,
		Labels:      cfg.GetLabels(),
		Annotations: cfg.GetAnnotations(),
		Mounts:      cfg.GetMounts(),
		LogPath:     c.LogPath,
		StopSignal:  cfg.GetStopSignal(),
		User: &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
			Uid: int64(c.Process.UID), Gid: int64(c.Process.GID), SupplementalGroups: toInt64s(c.Process.AdditionalGroups),
		}},
	}
	if rs.started != nil {
		st.StartedAt = rs.started.StartedAt.UnixNano()
	}
	if rs.exit != nil {
		st.FinishedAt = rs.exit.FinishedAt.UnixNano()
		st.ExitCode = int32(rs.exit.ExitCode)
		st.Reason = rs.exit.Reason
		st.Message = rs.exit.Message
	}
	if res := cfg.GetLinux().GetResources(); res != nil {
		st.Resources = &runtimeapi.ContainerResources{Linux: res}
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: st}
	if verbose {
		// writableLayer is the overlay upper dir (what the kubelet's
		// stats measure as the container's rootfs use).
		resp.Info = map[string]string{"cgroup": c.CgroupPath, "dir": r.dirOf(c.ID), "writableLayer": filepath.Join(r.dirOf(c.ID), "upper")}
		if rs.started != nil {
			resp.Info["pid"] = fmt.Sprint(rs.started.InitPid)
			resp.Info["shimPid"] = fmt.Sprint(rs.started.ShimPid)
		}
	}
	return resp, nil
}

func toInt64s(in []int) []int64 {
	out := make([]int64, len(in))
	for i, v := range in {
		out[i] = int64(v)
	}
	return out
}

// UpdateRuntimeConfig hands the node's pod CIDR to the network, when it
// takes one (nettools.Bridge does).
func (r *Runtime) UpdateRuntimeConfig(ctx context.Context, cfg *runtimeapi.RuntimeConfig) error {
	cidr := cfg.GetNetworkConfig().GetPodCidr()
	if cidr == "" {
		return nil
	}
	if s, ok := r.cfg.Network.(PodCIDRSetter); ok {
		if err := s.SetPodCIDR(cidr); err != nil {
			return status.Errorf(codes.InvalidArgument, "pod CIDR %s: %v", cidr, err)
		}
	}
	return nil
}

// PodCIDRSetter is a Network that takes the node's pod CIDR after it starts.
type PodCIDRSetter interface {
	SetPodCIDR(cidr string) error
}
