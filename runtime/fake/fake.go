// Package fake is an in-memory runtime.Runtime and runtime.ImageService for
// kubelet unit tests and hollow nodes (`skiff agent --runtime fake`). No
// process is started: a container is a record whose life is scripted by
// words in its command and args, so that pods created through the API can
// ask for the behaviour a test needs:
//
//	exit=N          exit with code N (at once, or after the delay below)
//	after=DUR       run DUR (a Go duration) before exiting (default: forever
//	                unless exit= or oom is given, then at once)
//	oom             be OOM-killed (exit 137, reason OOMKilled)
//	ignore-sigterm  StopContainer waits its whole timeout, then kills (137)
//	log=TEXT        write TEXT as a log line when started (repeatable)
//	tick=DUR        while running, write "tick N" (N = 1, 2, ...) every DUR
//	http=PORT       answer HTTP on PORT of the pod IP (probes, port-forward):
//	                200, or 500 while the file /fail-http exists
//	tcp=PORT        accept TCP connections on PORT (an echo server)
//
// Each container has a tiny virtual file system for exec: `touch F`,
// `rm F`, `test -f F`, `cat F`, `echo ARGS`, `true`, `false`, `exit N`,
// `sh -c 'exit N'`. Logs are written in the CRI format to the paths the
// kubelet asks for, so `kubectl logs` works on hollow nodes.
package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"

	skiffruntime "github.com/skiff-io/skiff/runtime"
)

// FakeContainer is the record of one simulated container.
type FakeContainer struct {
	ID         string
	SandboxID  string
	Config     *runtimeapi.ContainerConfig
	LogPath    string
	State      runtimeapi.ContainerState
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int32
	Reason     string
	ImageRef   string
	// Files is the virtual file system that exec commands change.
	Files map[string]string
	// StopTimeouts records the timeout of every StopContainer call.
	StopTimeouts []int64

	script script
	timer  *time.Timer
	// ticker writes the next tick= log line.
	ticker *time.Timer
}

type fakeSandbox struct {
	id        string
	config    *runtimeapi.PodSandboxConfig
	state     runtimeapi.PodSandboxState
	createdAt time.Time
	ip        string
}

// script is what a container's command and args ask for.
type script struct {
	exit          *int32
	after         time.Duration
	oom           bool
	ignoreSigterm bool
	logs          []string
	tick          time.Duration
	httpPort      int
	tcpPort       int
	// failStart: StartContainer fails (annotation fake.skiff.io/fail-start).
	failStart bool
}

func parseScript(words []string) script {
	var s script
	for _, w := range words {
		k, v, _ := strings.Cut(w, "=")
		switch k {
		case "exit":
			if n, err := strconv.Atoi(v); err == nil {
				c := int32(n)
				s.exit = &c
			}
		case "after":
			if d, err := time.ParseDuration(v); err == nil {
				s.after = d
			}
		case "oom":
			s.oom = true
		case "ignore-sigterm":
			s.ignoreSigterm = true
		case "log":
			s.logs = append(s.logs, v)
		case "tick":
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				s.tick = d
			}
		case "http":
			s.httpPort, _ = strconv.Atoi(v)
		case "tcp":
			s.tcpPort, _ = strconv.Atoi(v)
		}
	}
	return s
}

// FakeRuntime simulates pod sandboxes and containers in memory. It is safe
// for concurrent use; the zero value is not: use NewFakeRuntime.
type FakeRuntime struct {
	mu         sync.Mutex
	sandboxes  map[string]*fakeSandbox
	containers map[string]*FakeContainer
	nextID     int
	podCIDR    netip.Prefix
	nextHost   int
	calls      []string

	// ExecFunc, if set, answers ExecSync and exec streams instead of the
	// built-in commands.
	ExecFunc func(c *FakeContainer, cmd []string) (stdout, stderr []byte, exitCode int)
	// Errors makes the named method (e.g. "RunPodSandbox") fail once per
	// entry.
	errors map[string][]error
}

// NewFakeRuntime returns an empty FakeRuntime whose pods get addresses from
// 10.88.0.0/24 until UpdateRuntimeConfig gives a podCIDR.
func NewFakeRuntime() *FakeRuntime {
	return &FakeRuntime{
		sandboxes:  map[string]*fakeSandbox{},
		containers: map[string]*FakeContainer{},
		podCIDR:    netip.MustParsePrefix("10.88.0.0/24"),
		errors:     map[string][]error{},
	}
}

func notFound(kind, id string) error {
	return status.Errorf(codes.NotFound, "%s %q not found", kind, id)
}

// record notes a call and returns an injected error, if any.
func (f *FakeRuntime) record(method string) error {
	f.calls = append(f.calls, method)
	if errs := f.errors[method]; len(errs) > 0 {
		f.errors[method] = errs[1:]
		return errs[0]
	}
	return nil
}

// InjectError makes the next call of method fail with err.
func (f *FakeRuntime) InjectError(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors[method] = append(f.errors[method], err)
}

// Calls returns how many times each method was called.
func (f *FakeRuntime) Calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == method {
			n++
		}
	}
	return n
}

// UpdateRuntimeConfig takes the node's podCIDR (the CRI call the kubelet
// makes once the master assigned it).
func (f *FakeRuntime) UpdateRuntimeConfig(_ context.Context, cfg *runtimeapi.RuntimeConfig) error {
	if cfg.GetNetworkConfig().GetPodCidr() == "" {
		return nil
	}
	p, err := netip.ParsePrefix(cfg.NetworkConfig.PodCidr)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "pod CIDR: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.podCIDR = p.Masked()
	return nil
}

// PodCIDR returns the pod CIDR in use.
func (f *FakeRuntime) PodCIDR() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.podCIDR.String()
}

// RuntimeVersion names the runtime for the Node's nodeInfo.
func (f *FakeRuntime) RuntimeVersion() string { return "fake://0.1.0" }

func (f *FakeRuntime) newID(prefix string) string {
	f.nextID++
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s-%d-%d", prefix, f.nextID, time.Now().UnixNano())))
	return hex.EncodeToString(sum[:])[:32]
}

func (f *FakeRuntime) allocIP() string {
	f.nextHost++
	a := f.podCIDR.Addr()
	for i := 0; i < f.nextHost+1; i++ { // skip the network address and .1 (the bridge)
		a = a.Next()
	}
	return a.String()
}

// RunPodSandbox creates a ready sandbox with an address from the podCIDR
// (none for host-network pods).
func (f *FakeRuntime) RunPodSandbox(_ context.Context, config *runtimeapi.PodSandboxConfig, _ string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("RunPodSandbox"); err != nil {
		return "", err
	}
	sb := &fakeSandbox{id: f.newID("sandbox"), config: config, state: runtimeapi.PodSandboxState_SANDBOX_READY, createdAt: time.Now()}
	if config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() != runtimeapi.NamespaceMode_NODE {
		sb.ip = f.allocIP()
	}
	if dir := config.GetLogDirectory(); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", status.Errorf(codes.Internal, "log directory: %v", err)
		}
	}
	f.sandboxes[sb.id] = sb
	return sb.id, nil
}

// StopPodSandbox kills the sandbox's containers and marks it not ready.
func (f *FakeRuntime) StopPodSandbox(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("StopPodSandbox"); err != nil {
		return err
	}
	sb, ok := f.sandboxes[id]
	if !ok {
		return nil // CRI: stopping a missing sandbox is not an error
	}
	for _, c := range f.containers {
		if c.SandboxID == id && c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			f.exitLocked(c, 137, "")
		}
	}
	sb.state = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	return nil
}

// RemovePodSandbox removes the sandbox and its containers.
func (f *FakeRuntime) RemovePodSandbox(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("RemovePodSandbox"); err != nil {
		return err
	}
	for cid, c := range f.containers {
		if c.SandboxID == id {
			if c.timer != nil {
				c.timer.Stop()
			}
			delete(f.containers, cid)
		}
	}
	delete(f.sandboxes, id)
	return nil
}

func (f *FakeRuntime) sandboxStatusLocked(sb *fakeSandbox) *runtimeapi.PodSandboxStatus {
	st := &runtimeapi.PodSandboxStatus{
		Id: sb.id, Metadata: sb.config.Metadata, State: sb.state, CreatedAt: sb.createdAt.UnixNano(),
		Labels: sb.config.Labels, Annotations: sb.config.Annotations,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions()}},
	}
	if sb.ip != "" {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: sb.ip}
	}
	return st
}

// PodSandboxStatus reports a sandbox.
func (f *FakeRuntime) PodSandboxStatus(_ context.Context, id string, _ bool) (*runtimeapi.PodSandboxStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("PodSandboxStatus"); err != nil {
		return nil, err
	}
	sb, ok := f.sandboxes[id]
	if !ok {
		return nil, notFound("pod sandbox", id)
	}
	return &runtimeapi.PodSandboxStatusResponse{Status: f.sandboxStatusLocked(sb)}, nil
}

func labelsMatch(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// ListPodSandbox lists sandboxes, oldest first.
func (f *FakeRuntime) ListPodSandbox(_ context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("ListPodSandbox"); err != nil {
		return nil, err
	}
	var out []*runtimeapi.PodSandbox
	for _, sb := range f.sandboxes {
		if filter != nil {
			if filter.Id != "" && filter.Id != sb.id {
				continue
			}
			if filter.State != nil && filter.State.State != sb.state {
				continue
			}
			if !labelsMatch(filter.LabelSelector, sb.config.Labels) {
				continue
			}
		}
		out = append(out, &runtimeapi.PodSandbox{Id: sb.id, Metadata: sb.config.Metadata, State: sb.state,
			CreatedAt: sb.createdAt.UnixNano(), Labels: sb.config.Labels, Annotations: sb.config.Annotations})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out, nil
}

// CreateContainer records a container in the CREATED state.
func (f *FakeRuntime) CreateContainer(_ context.Context, sandboxID string, config *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("CreateContainer"); err != nil {
		return "", err
	}
	sb, ok := f.sandboxes[sandboxID]
	if !ok {
		return "", notFound("pod sandbox", sandboxID)
	}
	if sb.state != runtimeapi.PodSandboxState_SANDBOX_READY {
		return "", status.Errorf(codes.FailedPrecondition, "pod sandbox %s is not ready", sandboxID)
	}
	for _, c := range f.containers {
		if c.SandboxID == sandboxID && c.Config.Metadata.Name == config.Metadata.Name && c.Config.Metadata.Attempt == config.Metadata.Attempt {
			return "", status.Errorf(codes.AlreadyExists, "container %s attempt %d already exists", config.Metadata.Name, config.Metadata.Attempt)
		}
	}
	c := &FakeContainer{
		ID: f.newID("container"), SandboxID: sandboxID, Config: config,
		State: runtimeapi.ContainerState_CONTAINER_CREATED, CreatedAt: time.Now(),
		Files:    map[string]string{},
		ImageRef: imageID(config.GetImage().GetImage()),
		script:   scriptFor(config, sb.config),
	}
	if sb.config.LogDirectory != "" && config.LogPath != "" {
		c.LogPath = filepath.Join(sb.config.LogDirectory, config.LogPath)
	}
	f.containers[c.ID] = c
	return c.ID, nil
}

// StartContainer runs the container's script.
func (f *FakeRuntime) StartContainer(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("StartContainer"); err != nil {
		return err
	}
	c, ok := f.containers[id]
	if !ok {
		return notFound("container", id)
	}
	if c.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		return status.Errorf(codes.FailedPrecondition, "container %s is %s, not created", id, c.State)
	}
	if c.script.failStart {
		f.exitLocked(c, 128, "StartError")
		return status.Errorf(codes.Unknown, "fake runtime: container %s failed to start (%s)", c.Config.Metadata.Name, AnnotationFailStart)
	}
	c.State, c.StartedAt = runtimeapi.ContainerState_CONTAINER_RUNNING, time.Now()
	if c.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(c.LogPath), 0o755); err != nil {
			return status.Errorf(codes.Internal, "log dir: %v", err)
		}
		f.logLocked(c, "stdout", fmt.Sprintf("fake container %s started", c.Config.Metadata.Name))
		for _, l := range c.script.logs {
			f.logLocked(c, "stdout", l)
		}
		if c.script.tick > 0 {
			f.tickLocked(c, 1)
		}
	}
	s := c.script
	if s.exit == nil && !s.oom {
		return nil
	}
	code, reason := int32(0), ""
	if s.exit != nil {
		code = *s.exit
	}
	if s.oom {
		code, reason = 137, "OOMKilled"
	}
	if s.after <= 0 {
		f.exitLocked(c, code, reason)
		return nil
	}
	c.timer = time.AfterFunc(s.after, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			f.exitLocked(c, code, reason)
		}
	})
	return nil
}

func (f *FakeRuntime) logLocked(c *FakeContainer, stream, line string) {
	if c.LogPath == "" {
		return
	}
	fh, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return
	}
	defer fh.Close()
	fmt.Fprintf(fh, "%s %s F %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, line)
}

// tickLocked schedules log line "tick n" of c, and the next one after it,
// while c runs.
func (f *FakeRuntime) tickLocked(c *FakeContainer, n int) {
	c.ticker = time.AfterFunc(c.script.tick, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			f.logLocked(c, "stdout", fmt.Sprintf("tick %d", n))
			f.tickLocked(c, n+1)
		}
	})
}

func (f *FakeRuntime) exitLocked(c *FakeContainer, code int32, reason string) {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.ticker != nil {
		c.ticker.Stop()
		c.ticker = nil
	}
	c.State, c.FinishedAt, c.ExitCode, c.Reason = runtimeapi.ContainerState_CONTAINER_EXITED, time.Now(), code, reason
	f.logLocked(c, "stdout", fmt.Sprintf("fake container %s exited with %d", c.Config.Metadata.Name, code))
}

// Exit makes a running container exit now with code (a crash).
func (f *FakeRuntime) Exit(id string, code int32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok || c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return fmt.Errorf("container %s is not running", id)
	}
	f.exitLocked(c, code, "")
	return nil
}

// OOMKill makes a running container exit as the OOM killer would.
func (f *FakeRuntime) OOMKill(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok || c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return fmt.Errorf("container %s is not running", id)
	}
	f.exitLocked(c, 137, "OOMKilled")
	return nil
}

// StopContainer sends the simulated SIGTERM: the container exits at once
// with 143, or with ignore-sigterm after the timeout with 137.
func (f *FakeRuntime) StopContainer(ctx context.Context, id string, timeout int64) error {
	f.mu.Lock()
	if err := f.record("StopContainer"); err != nil {
		f.mu.Unlock()
		return err
	}
	c, ok := f.containers[id]
	if !ok {
		f.mu.Unlock()
		return notFound("container", id)
	}
	c.StopTimeouts = append(c.StopTimeouts, timeout)
	if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		if c.State == runtimeapi.ContainerState_CONTAINER_CREATED {
			f.exitLocked(c, 0, "")
		}
		f.mu.Unlock()
		return nil
	}
	if !c.script.ignoreSigterm || timeout <= 0 {
		code := int32(143)
		if timeout <= 0 {
			code = 137
		}
		f.exitLocked(c, code, "")
		f.mu.Unlock()
		return nil
	}
	f.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(time.Duration(timeout) * time.Second):
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
		f.exitLocked(c, 137, "")
	}
	return nil
}

// RemoveContainer forgets a container; a running one is killed first.
func (f *FakeRuntime) RemoveContainer(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("RemoveContainer"); err != nil {
		return err
	}
	if c, ok := f.containers[id]; ok && c.timer != nil {
		c.timer.Stop()
	}
	delete(f.containers, id)
	return nil
}

func (c *FakeContainer) toCRI() *runtimeapi.Container {
	return &runtimeapi.Container{
		Id: c.ID, PodSandboxId: c.SandboxID, Metadata: c.Config.Metadata, Image: c.Config.Image,
		ImageRef: c.ImageRef, State: c.State, CreatedAt: c.CreatedAt.UnixNano(),
		Labels: c.Config.Labels, Annotations: c.Config.Annotations,
	}
}

// ListContainers lists containers, oldest first.
func (f *FakeRuntime) ListContainers(_ context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("ListContainers"); err != nil {
		return nil, err
	}
	var out []*runtimeapi.Container
	for _, c := range f.containers {
		if filter != nil {
			if filter.Id != "" && filter.Id != c.ID {
				continue
			}
			if filter.PodSandboxId != "" && filter.PodSandboxId != c.SandboxID {
				continue
			}
			if filter.State != nil && filter.State.State != c.State {
				continue
			}
			if !labelsMatch(filter.LabelSelector, c.Config.Labels) {
				continue
			}
		}
		out = append(out, c.toCRI())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// ContainerStatus reports a container.
func (f *FakeRuntime) ContainerStatus(_ context.Context, id string, _ bool) (*runtimeapi.ContainerStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("ContainerStatus"); err != nil {
		return nil, err
	}
	c, ok := f.containers[id]
	if !ok {
		return nil, notFound("container", id)
	}
	return &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{
		Id: c.ID, Metadata: c.Config.Metadata, State: c.State,
		CreatedAt: unixNano(c.CreatedAt), StartedAt: unixNano(c.StartedAt), FinishedAt: unixNano(c.FinishedAt),
		ExitCode: c.ExitCode, Reason: c.Reason, Image: c.Config.Image, ImageRef: c.ImageRef,
		Labels: c.Config.Labels, Annotations: c.Config.Annotations, Mounts: c.Config.Mounts, LogPath: c.LogPath,
	}}, nil
}

// Container returns a copy of the record of a container (tests).
func (f *FakeRuntime) Container(id string) (FakeContainer, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return FakeContainer{}, false
	}
	cp := *c
	cp.StopTimeouts = append([]int64(nil), c.StopTimeouts...)
	cp.timer = nil
	return cp, true
}

// ContainerIDs lists the IDs of the containers named name (all when
// empty), oldest first.
func (f *FakeRuntime) ContainerIDs(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var cs []*FakeContainer
	for _, c := range f.containers {
		if name == "" || c.Config.Metadata.Name == name {
			cs = append(cs, c)
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].CreatedAt.Before(cs[j].CreatedAt) })
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids
}

// SandboxCount returns how many sandboxes exist (all states).
func (f *FakeRuntime) SandboxCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sandboxes)
}

// ExecSync runs one of the built-in commands (or ExecFunc) in a running
// container. A non-zero exit is an error of type utilexec.CodeExitError.
func (f *FakeRuntime) ExecSync(_ context.Context, id string, cmd []string, _ int64) ([]byte, []byte, error) {
	f.mu.Lock()
	if err := f.record("ExecSync"); err != nil {
		f.mu.Unlock()
		return nil, nil, err
	}
	c, ok := f.containers[id]
	if !ok {
		f.mu.Unlock()
		return nil, nil, notFound("container", id)
	}
	if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		f.mu.Unlock()
		return nil, nil, status.Errorf(codes.FailedPrecondition, "container %s is not running", id)
	}
	fn := f.ExecFunc
	var out, errb []byte
	var code int
	if fn == nil {
		out, errb, code = c.runLocked(cmd)
	}
	f.mu.Unlock()
	if fn != nil {
		out, errb, code = fn(c, cmd)
	}
	if code != 0 {
		return out, errb, exitError(code)
	}
	return out, errb, nil
}

// runLocked runs a built-in command against the container's files.
func (c *FakeContainer) runLocked(cmd []string) (stdout, stderr []byte, code int) {
	if len(cmd) == 0 {
		return nil, []byte("no command"), 126
	}
	arg := func(i int) string {
		if i < len(cmd) {
			return cmd[i]
		}
		return ""
	}
	switch cmd[0] {
	case "true":
		return nil, nil, 0
	case "false":
		return nil, nil, 1
	case "exit":
		n, _ := strconv.Atoi(arg(1))
		return nil, nil, n
	case "sh":
		if arg(1) == "-c" {
			return c.runLocked(strings.Fields(arg(2)))
		}
		return nil, nil, 0
	case "echo":
		return []byte(strings.Join(cmd[1:], " ") + "\n"), nil, 0
	case "touch":
		for _, p := range cmd[1:] {
			c.Files[p] += ""
		}
		return nil, nil, 0
	case "rm":
		for _, p := range cmd[1:] {
			if p != "-f" {
				delete(c.Files, p)
			}
		}
		return nil, nil, 0
	case "test":
		if _, ok := c.Files[arg(2)]; arg(1) == "-f" && ok {
			return nil, nil, 0
		}
		return nil, nil, 1
	case "cat":
		if v, ok := c.Files[arg(1)]; ok {
			return []byte(v), nil, 0
		}
		return nil, []byte("cat: " + arg(1) + ": No such file or directory\n"), 1
	case "hostname":
		return []byte(c.Config.Labels["io.kubernetes.pod.name"] + "\n"), nil, 0
	case "env":
		var b strings.Builder
		for _, kv := range c.Config.Envs {
			fmt.Fprintf(&b, "%s=%s\n", kv.Key, kv.Value)
		}
		return []byte(b.String()), nil, 0
	}
	return nil, []byte(cmd[0] + ": command not found\n"), 127
}

// ContainerStats returns zero usage for a container.
func (f *FakeRuntime) ContainerStats(_ context.Context, id string) (*runtimeapi.ContainerStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return nil, notFound("container", id)
	}
	return statsOf(c), nil
}

func statsOf(c *FakeContainer) *runtimeapi.ContainerStats {
	now := time.Now().UnixNano()
	return &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{Id: c.ID, Metadata: c.Config.Metadata, Labels: c.Config.Labels, Annotations: c.Config.Annotations},
		Cpu:        &runtimeapi.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{}},
		Memory:     &runtimeapi.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtimeapi.UInt64Value{}},
	}
}

// ListContainerStats returns zero usage for the matching containers.
func (f *FakeRuntime) ListContainerStats(_ context.Context, filter *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.ContainerStats
	for _, c := range f.containers {
		if filter != nil && ((filter.Id != "" && filter.Id != c.ID) || (filter.PodSandboxId != "" && filter.PodSandboxId != c.SandboxID) ||
			!labelsMatch(filter.LabelSelector, c.Config.Labels)) {
			continue
		}
		out = append(out, statsOf(c))
	}
	return out, nil
}

// Streaming serves exec, attach and port-forward for cri-streaming.
func (f *FakeRuntime) Streaming() streaming.Runtime { return &fakeStreaming{f: f} }

// DialContext connects to a simulated server (http=PORT, tcp=PORT) of a
// running container at a pod IP. The kubelet's probes use it instead of the
// network, so hollow nodes send no traffic to pod addresses.
func (f *FakeRuntime) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portStr)
	f.mu.Lock()
	var target *FakeContainer
	for _, c := range f.containers {
		sb := f.sandboxes[c.SandboxID]
		if sb == nil || sb.ip != host || c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		if c.script.httpPort == port || c.script.tcpPort == port {
			target = c
			break
		}
	}
	f.mu.Unlock()
	if target == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("connection refused (fake runtime: nothing listens on %s)", address)}
	}
	client, server := net.Pipe()
	go f.serveConn(target, port, server)
	return client, nil
}

func imageID(name string) string {
	sum := sha256.Sum256([]byte(normalizeImage(name)))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// normalizeImage adds the default tag.
func normalizeImage(name string) string {
	if name == "" {
		return ""
	}
	last := name[strings.LastIndex(name, "/")+1:]
	if !strings.Contains(last, ":") && !strings.Contains(name, "@") {
		return name + ":latest"
	}
	return name
}

var (
	_ skiffruntime.Runtime      = (*FakeRuntime)(nil)
	_ skiffruntime.ImageService = (*FakeImageService)(nil)
)
