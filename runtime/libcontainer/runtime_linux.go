// Package libcontainer runs pods as Linux containers with runc's
// libcontainer: it implements runtime.Runtime.
//
// A pod sandbox is not a process. It is a set of namespaces bind-mounted on
// files (network under <agent>/netns/<id>, IPC and UTS under
// <agent>/sandboxes/<id>/), a /dev/shm tmpfs shared by the pod's containers,
// and the pod cgroup; its containers join those namespaces. No pause
// container: the namespaces live as long as their bind mounts.
//
// Each container is one libcontainer container started by its own shim
// (runtime/shim), the skiff binary re-executed, which outlives the agent.
// A new Runtime over the same data dir finds the containers again from
// their directories and the shims' state files.
//
// On disk, under <data-dir>/agent:
//
//	sandboxes/<id>/sandbox.json   the sandbox record (config, IPs, state)
//	sandboxes/<id>/{ipc,uts,shm}  namespace bind mounts, the pod's /dev/shm
//	netns/<id>                    the network namespace bind mount
//	containers/<id>/              container.json, shim files, rootfs, upper
//	runc/<id>/                    libcontainer's state
//
// and CRI logs under <data-dir>/pods/<ns>_<name>_<uid>/<container>/N.log
// unless the sandbox config gives a log directory.
package libcontainer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"k8s.io/cri-streaming/pkg/streaming"

	"github.com/skiff-io/skiff/runtime"
	"github.com/skiff-io/skiff/runtime/image"
	"github.com/skiff-io/skiff/runtime/shim"
)

// Images is what the runtime needs of the image store (image.Store).
type Images interface {
	// Config returns the image config and record of a reference or ID.
	Config(ref string) (*v1.ConfigFile, *image.Image, error)
	// MountRootfs mounts a container's overlay rootfs at <dir>/rootfs.
	MountRootfs(ref, id, dir string) (*image.Rootfs, error)
	// UnmountRootfs unmounts it and removes dir.
	UnmountRootfs(id, dir string) error
}

// Config configures a Runtime.
type Config struct {
	// DataDir is Skiff's data dir; the runtime keeps its state under
	// <DataDir>/agent and container logs under <DataDir>/pods.
	DataDir string
	// Images provides image configs and root filesystems. Required.
	Images Images
	// Network connects sandboxes to the pod network; nil leaves pods with
	// loopback only.
	Network Network
	// Binary is the executable run as shim (`BINARY shim DIR`) and, by
	// the shim, as container init: the small skiff-shim (cmd/skiff-shim,
	// unpacked by package shimbin) or skiff itself. Default: this
	// process's executable.
	Binary string
	// CgroupRoot is the parent of the QoS cgroups of sandboxes without a
	// CgroupParent. Default runtime.CgroupRoot (/skiff/kubepods).
	CgroupRoot string
	// PodPidsLimit caps the processes of each pod (its cgroup's pids.max);
	// 0 or less is no limit.
	PodPidsLimit int64
	// LogMaxSize and LogMaxFiles rotate container logs (defaults 10 MiB, 5).
	LogMaxSize  int64
	LogMaxFiles int
	// Logger, default slog.Default().
	Logger *slog.Logger
}

// Runtime implements runtime.Runtime with libcontainer.
type Runtime struct {
	cfg          Config
	log          *slog.Logger
	agentDir     string
	sandboxesDir string
	containerDir string
	netnsDir     string
	runcRoot     string
	podLogDir    string
	// host is what this host withholds from containers (hostlimits_linux.go).
	host hostLimits

	mu         sync.Mutex
	sandboxes  map[string]*sandbox
	containers map[string]*container
}

var _ runtime.Runtime = (*Runtime)(nil)

// New opens the runtime state under cfg.DataDir and adopts the sandboxes and
// containers a previous Runtime left: running containers keep running under
// their shims, and nothing is started again.
func New(cfg Config) (*Runtime, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("runtime: data dir not set")
	}
	if cfg.Images == nil {
		return nil, errors.New("runtime: no image store")
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = dataDir
	if cfg.Binary == "" {
		if cfg.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("runtime: own executable: %w", err)
		}
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = runtime.CgroupRoot
	}
	if cfg.LogMaxSize <= 0 {
		cfg.LogMaxSize = shim.DefaultLogMaxSize
	}
	if cfg.LogMaxFiles <= 0 {
		cfg.LogMaxFiles = shim.DefaultLogMaxFiles
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	agent := filepath.Join(dataDir, "agent")
	r := &Runtime{
		cfg:          cfg,
		log:          cfg.Logger.With("component", "runtime"),
		agentDir:     agent,
		sandboxesDir: filepath.Join(agent, "sandboxes"),
		containerDir: filepath.Join(agent, "containers"),
		netnsDir:     filepath.Join(agent, "netns"),
		runcRoot:     filepath.Join(agent, "runc"),
		podLogDir:    filepath.Join(dataDir, "pods"),
		sandboxes:    map[string]*sandbox{},
		containers:   map[string]*container{},
	}
	for _, d := range []string{r.sandboxesDir, r.containerDir, r.netnsDir, r.runcRoot, r.podLogDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("runtime: %w", err)
		}
	}
	if err := os.Chmod(r.podLogDir, 0o755); err != nil {
		return nil, err
	}
	if r.host, err = detectHostLimits(); err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	if d := r.host.degradations(); len(d) > 0 {
		r.log.Warn("this host withholds features from containers; they run degraded", "degradations", d)
	}
	if err := r.recover(); err != nil {
		return nil, err
	}
	return r, nil
}

// Degradations lists, one line each, what containers on this host do not
// get (capabilities outside the host's bounding set, oom_score_adj below
// the agent's without CAP_SYS_RESOURCE, missing cgroup controllers, a
// restricted device cgroup); the agent reports them on its Node.
func (r *Runtime) Degradations() []string { return r.host.degradations() }

// recover loads the records of sandboxes and containers from disk.
func (r *Runtime) recover() error {
	entries, err := os.ReadDir(r.sandboxesDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		sb, err := r.loadSandbox(e.Name())
		if errors.Is(err, os.ErrNotExist) {
			// RunPodSandbox was interrupted before it recorded anything.
			r.removeHalfSandbox(e.Name())
			continue
		}
		if err != nil {
			r.log.Warn("skipping unreadable sandbox record", "id", e.Name(), "err", err)
			continue
		}
		if sb.Ready && sb.NetNS != "" && !isNamespaceMount(sb.NetNS) {
			// The machine rebooted: the namespaces are gone.
			r.log.Warn("sandbox lost its network namespace", "id", sb.ID)
			sb.Ready = false
		}
		r.sandboxes[sb.ID] = sb
	}
	entries, err = os.ReadDir(r.containerDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		c, err := r.loadContainer(e.Name())
		if errors.Is(err, os.ErrNotExist) {
			// CreateContainer was interrupted before it recorded anything.
			if err := r.cfg.Images.UnmountRootfs(e.Name(), r.dirOf(e.Name())); err != nil {
				r.log.Warn("removing a half-created container", "id", e.Name(), "err", err)
			}
			continue
		}
		if err != nil {
			r.log.Warn("skipping unreadable container record", "id", e.Name(), "err", err)
			continue
		}
		r.containers[c.ID] = c
	}
	// Network namespaces of no sandbox (an interrupted RunPodSandbox).
	if entries, err := os.ReadDir(r.netnsDir); err == nil {
		for _, e := range entries {
			if _, ok := r.sandboxes[e.Name()]; !ok {
				r.removeHalfSandbox(e.Name())
			}
		}
	}
	r.log.Info("runtime state loaded", "sandboxes", len(r.sandboxes), "containers", len(r.containers))
	return nil
}

// Streaming returns the exec, attach and port-forward side for
// k8s.io/cri-streaming's server.
func (r *Runtime) Streaming() streaming.Runtime { return streamingRuntime{r} }

func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// record is how sandboxes and containers are stored: JSON with the CRI
// config as protobuf JSON.
func writeRecord(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// protoJSON is a CRI message stored as protobuf JSON inside a record.
type protoJSON[T proto.Message] struct{ Msg T }

func (p protoJSON[T]) MarshalJSON() ([]byte, error) {
	return protojson.Marshal(p.Msg)
}

func (p *protoJSON[T]) UnmarshalJSON(b []byte) error {
	msg := p.Msg.ProtoReflect().New().Interface().(T)
	if err := protojson.Unmarshal(b, msg); err != nil {
		return err
	}
	p.Msg = msg
	return nil
}

// lookupIDs resolves a full ID or a unique prefix of one.
func lookupID[T any](m map[string]T, id string) (T, string, bool) {
	if v, ok := m[id]; ok {
		return v, id, true
	}
	var (
		zero  T
		found string
	)
	if len(id) < 6 {
		return zero, id, false
	}
	for k := range m {
		if len(k) >= len(id) && k[:len(id)] == id {
			if found != "" {
				return zero, id, false
			}
			found = k
		}
	}
	if found == "" {
		return zero, id, false
	}
	return m[found], found, true
}

// removeHalfSandbox undoes what an interrupted RunPodSandbox left: its
// namespace bind mounts, /dev/shm and directory.
func (r *Runtime) removeHalfSandbox(id string) {
	dir := r.sandboxDir(id)
	sb := &sandbox{ID: id, NetNS: filepath.Join(r.netnsDir, id), IPCNS: filepath.Join(dir, "ipc"), UTSNS: filepath.Join(dir, "uts"), Shm: filepath.Join(dir, "shm")}
	if r.cfg.Network == nil {
		sb.NetNS = "" // nothing to tear down; removeNamespace below still runs
	}
	if err := r.releaseSandbox(context.Background(), sb); err != nil {
		r.log.Warn("cleaning up an interrupted sandbox", "id", id, "err", err)
	}
	_ = removeNamespace(filepath.Join(r.netnsDir, id))
	if err := os.RemoveAll(dir); err != nil {
		r.log.Warn("cleaning up an interrupted sandbox", "id", id, "err", err)
	}
}
