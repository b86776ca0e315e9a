package libcontainer

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	seccompprofile "github.com/moby/profiles/seccomp"
	"github.com/moby/sys/capability"
	"github.com/moby/sys/user"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/runtime/shim"
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultCapabilities is the capability set of a container that asks for
// none (Docker's and containerd's default).
var defaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Paths hidden from and read-only in unprivileged containers (containerd's
// defaults), unless the CRI config brings its own lists.
var (
	defaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	defaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// buildConfig turns a CRI container config, the image config and the
// sandbox into a libcontainer config and the init process, going through an
// OCI runtime spec and runc's specconv, as `runc run` does.
func (r *Runtime) buildConfig(c *container, sb *sandbox, img *v1.ConfigFile, rootfs string) (*configs.Config, shim.Process, error) {
	cc := c.config()
	sc := cc.GetLinux().GetSecurityContext()
	if sc == nil {
		sc = &runtimeapi.LinuxContainerSecurityContext{}
	}
	privileged := sc.Privileged
	ic := img.Config

	// Command: the CRI command replaces the entrypoint (and drops the
	// image's cmd); args replace the cmd.
	var args []string
	switch {
	case len(cc.Command) > 0:
		args = append(slices.Clone(cc.Command), cc.Args...)
	case len(cc.Args) > 0:
		args = append(slices.Clone(ic.Entrypoint), cc.Args...)
	default:
		args = append(slices.Clone(ic.Entrypoint), ic.Cmd...)
	}
	if len(args) == 0 {
		return nil, shim.Process{}, errors.New("no command: neither the container nor its image gives one")
	}

	hostname := sb.config().GetHostname()
	if hostname == "" {
		hostname = sb.config().GetMetadata().GetName()
	}
	if namespaceOptions(sb.config()).Network == runtimeapi.NamespaceMode_NODE {
		hostname, _ = os.Hostname()
	}
	env := mergeEnv(ic.Env, cc.Envs, hostname, cc.Tty)

	uid, gid, groups, err := resolveUser(rootfs, ic.User, sc)
	if err != nil {
		return nil, shim.Process{}, err
	}
	cwd := cc.WorkingDir
	if cwd == "" {
		cwd = ic.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return nil, shim.Process{}, fmt.Errorf("working dir %q is not absolute", cwd)
	}
	// Make the working dir, as Docker does, when the image lacks it.
	if p, err := securejoin.SecureJoin(rootfs, cwd); err == nil {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return nil, shim.Process{}, fmt.Errorf("working dir: %w", err)
			}
			_ = os.Chown(p, uid, gid)
		}
	}

	caps, err := capabilities(sc, privileged)
	if err != nil {
		return nil, shim.Process{}, err
	}
	// runc cannot give what the host's bounding set lacks: drop it.
	caps, dropped := r.host.clampCaps(caps)
	if len(dropped) > 0 && !privileged {
		r.log.Debug("capabilities the host lacks dropped", "container", c.ID, "capabilities", dropped)
	}
	spec := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfs, Readonly: sc.ReadonlyRootfs},
		Process: &specs.Process{
			User:            specs.User{UID: uint32(uid), GID: uint32(gid)},
			Args:            args,
			Env:             env,
			Cwd:             cwd,
			NoNewPrivileges: sc.NoNewPrivs && !privileged,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
		},
		Mounts: defaultMounts(privileged, sb.Shm),
		Linux: &specs.Linux{
			CgroupsPath: c.CgroupPath,
			Resources:   r.resources(cc.GetLinux().GetResources(), privileged),
		},
	}
	// A sysctl the host lacks would fail the start: skip it.
	var skipped []string
	spec.Linux.Sysctl, skipped = r.host.sysctls(sb.config().GetLinux().GetSysctls())
	if len(skipped) > 0 {
		r.log.Warn("sysctls this host lacks are skipped", "container", c.ID, "sysctls", skipped)
	}
	if res := cc.GetLinux().GetResources(); res != nil && res.OomScoreAdj != 0 {
		// Without CAP_SYS_RESOURCE the init cannot go below the agent's
		// own score (a Guaranteed pod's -997 would fail every start).
		adj := r.host.clampOOMScoreAdj(int(res.OomScoreAdj))
		spec.Process.OOMScoreAdj = &adj
	}
	if !privileged {
		spec.Linux.MaskedPaths = defaultMaskedPaths
		if sc.MaskedPaths != nil {
			spec.Linux.MaskedPaths = sc.MaskedPaths
		}
		spec.Linux.ReadonlyPaths = defaultReadonlyPaths
		if sc.ReadonlyPaths != nil {
			spec.Linux.ReadonlyPaths = sc.ReadonlyPaths
		}
	}

	// Namespaces: mount and PID of its own (or the node's PID namespace);
	// network, IPC and UTS of the sandbox.
	ns := sc.GetNamespaceOptions()
	if ns == nil {
		ns = namespaceOptions(sb.config())
	}
	spec.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	switch ns.Pid {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_TARGET:
		// An ephemeral container with a target joins the target's PID
		// namespace, and sees its processes.
		p, err := r.pidNamespaceOf(ns.TargetId)
		if err != nil {
			return nil, shim.Process{}, err
		}
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: p})
	default:
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	if sb.NetNS != "" {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNS})
	}
	if sb.IPCNS != "" {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: sb.IPCNS})
	}
	if sb.UTSNS != "" {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UTSNamespace, Path: sb.UTSNS})
	}

	for _, m := range cc.Mounts {
		om, err := bindMount(m)
		if err != nil {
			return nil, shim.Process{}, err
		}
		spec.Mounts = slices.DeleteFunc(spec.Mounts, func(d specs.Mount) bool { return path.Clean(d.Destination) == path.Clean(om.Destination) })
		spec.Mounts = append(spec.Mounts, om)
	}

	if !privileged {
		prof, err := seccompProfile(sc, spec)
		if err != nil {
			return nil, shim.Process{}, err
		}
		if prof != nil && !seccompBuilt {
			return nil, shim.Process{}, errors.New("a seccomp profile is asked for but this binary was built without seccomp support (build with CGO_ENABLED=1 -tags seccomp)")
		}
		spec.Linux.Seccomp = prof
	}

	lc, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: c.ID, Spec: spec})
	if err != nil {
		return nil, shim.Process{}, fmt.Errorf("libcontainer config: %w", err)
	}
	if privileged {
		// The host's devices, as runc and containerd give a privileged
		// container; the device cgroup allows them (resources).
		if lc.Devices, err = withHostDevices(lc.Devices); err != nil {
			return nil, shim.Process{}, err
		}
	}
	return lc, shim.Process{
		Args: args, Env: env, Cwd: cwd, UID: uid, GID: gid, AdditionalGroups: groups,
		Tty: cc.Tty, Stdin: cc.Stdin, StdinOnce: cc.StdinOnce,
	}, nil
}

// pidNamespaceOf is the PID namespace of the running container id (its
// init's).
func (r *Runtime) pidNamespaceOf(id string) (string, error) {
	c, err := r.getContainer(id)
	if err != nil {
		return "", fmt.Errorf("target container: %w", err)
	}
	rs := r.runState(c)
	if rs.state != runtimeapi.ContainerState_CONTAINER_RUNNING || rs.started == nil || rs.started.InitPid <= 0 {
		return "", fmt.Errorf("target container %s is not running", id)
	}
	return fmt.Sprintf("/proc/%d/ns/pid", rs.started.InitPid), nil
}

// mergeEnv is the image's environment overridden by the container's, with
// PATH and HOSTNAME when neither sets them.
func mergeEnv(image []string, kvs []*runtimeapi.KeyValue, hostname string, tty bool) []string {
	var env []string
	index := map[string]int{}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			env[i] = kv
			return
		}
		index[k] = len(env)
		env = append(env, kv)
	}
	set(defaultPath)
	set("HOSTNAME=" + hostname)
	if tty {
		set("TERM=xterm")
	}
	for _, kv := range image {
		set(kv)
	}
	for _, kv := range kvs {
		set(kv.Key + "=" + string(kv.Value))
	}
	return env
}

// resolveUser finds the UID, GID and supplementary groups of the process:
// runAsUser/runAsUsername/runAsGroup from the security context, else the
// image's USER, looked up in the rootfs's /etc/passwd and /etc/group.
func resolveUser(rootfs, imageUser string, sc *runtimeapi.LinuxContainerSecurityContext) (uid, gid int, groups []int, err error) {
	spec := imageUser
	switch {
	case sc.RunAsUser != nil:
		spec = strconv.FormatInt(sc.RunAsUser.Value, 10)
	case sc.RunAsUsername != "":
		spec = sc.RunAsUsername
	}
	if sc.RunAsGroup != nil {
		u, _, _ := strings.Cut(spec, ":")
		if u == "" {
			u = "0"
		}
		spec = u + ":" + strconv.FormatInt(sc.RunAsGroup.Value, 10)
	}
	if spec == "" {
		spec = "0"
	}
	passwd, err := securejoin.SecureJoin(rootfs, "/etc/passwd")
	if err != nil {
		return 0, 0, nil, err
	}
	group, err := securejoin.SecureJoin(rootfs, "/etc/group")
	if err != nil {
		return 0, 0, nil, err
	}
	eu, err := user.GetExecUserPath(spec, &user.ExecUser{Home: "/"}, passwd, group)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("user %q: %w", spec, err)
	}
	groups = eu.Sgids
	for _, g := range sc.SupplementalGroups {
		if !slices.Contains(groups, int(g)) {
			groups = append(groups, int(g))
		}
	}
	return eu.Uid, eu.Gid, groups, nil
}

// capabilities is the default set with the config's drops and adds
// ("ALL" works in both), or every capability for a privileged container.
func capabilities(sc *runtimeapi.LinuxContainerSecurityContext, privileged bool) ([]string, error) {
	var all []string
	for _, c := range capability.ListKnown() {
		all = append(all, "CAP_"+strings.ToUpper(c.String()))
	}
	if privileged {
		return all, nil
	}
	norm := func(c string) string {
		c = strings.ToUpper(c)
		if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		return c
	}
	caps := slices.Clone(defaultCapabilities)
	for _, d := range sc.GetCapabilities().GetDropCapabilities() {
		d = norm(d)
		if d == "ALL" {
			caps = nil
			continue
		}
		caps = slices.DeleteFunc(caps, func(c string) bool { return c == d })
	}
	for _, a := range sc.GetCapabilities().GetAddCapabilities() {
		a = norm(a)
		if a == "ALL" {
			caps = slices.Clone(all)
			continue
		}
		if !slices.Contains(all, a) {
			return nil, fmt.Errorf("unknown capability %s", a)
		}
		if !slices.Contains(caps, a) {
			caps = append(caps, a)
		}
	}
	return caps, nil
}

// defaultMounts are /proc, /dev, /dev/pts, /dev/shm (the pod's, when it has
// one), /dev/mqueue, /sys (read-only unless privileged) and the cgroup
// filesystem (read-only).
func defaultMounts(privileged bool, podShm string) []specs.Mount {
	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	cgroupOpts := []string{"nosuid", "noexec", "nodev", "relatime", "ro"}
	if privileged {
		sysOpts = []string{"nosuid", "noexec", "nodev", "rw"}
		cgroupOpts = []string{"nosuid", "noexec", "nodev", "relatime", "rw"}
	}
	shm := specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}
	if podShm != "" {
		shm = specs.Mount{Destination: "/dev/shm", Type: "bind", Source: podShm, Options: []string{"rbind", "nosuid", "noexec", "nodev", "rw"}}
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		shm,
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: cgroupOpts},
	}
}

// bindMount turns a CRI mount (a host file or directory the agent
// prepared) into an OCI bind mount.
func bindMount(m *runtimeapi.Mount) (specs.Mount, error) {
	if !path.IsAbs(m.ContainerPath) {
		return specs.Mount{}, fmt.Errorf("mount destination %q is not absolute", m.ContainerPath)
	}
	if _, err := os.Stat(m.HostPath); err != nil {
		return specs.Mount{}, fmt.Errorf("mount source: %w", err)
	}
	opts := []string{"rbind"}
	if m.Readonly {
		opts = append(opts, "ro")
		if m.RecursiveReadOnly {
			opts = append(opts, "rro")
		}
	} else {
		opts = append(opts, "rw")
	}
	switch m.Propagation {
	case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		opts = append(opts, "rslave")
	case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		opts = append(opts, "rshared")
	default:
		opts = append(opts, "rprivate")
	}
	return specs.Mount{Destination: m.ContainerPath, Type: "bind", Source: m.HostPath, Options: opts}, nil
}

// resources maps CRI resources to OCI ones: cpu shares, quota and period,
// cpuset, memory limit; devices default-deny unless privileged (then all,
// or what the host's own device cgroup allows). Limits of cgroup
// controllers the host lacks are left out.
//
// The device rules must be explicit: the libcontainer config reaches the
// shim as JSON, which drops cgroups.Resources.SkipDevices, and an empty
// rule list there means "deny all" (a privileged container then failed
// with "error reopening /dev/null inside container: operation not
// permitted").
func (r *Runtime) resources(res *runtimeapi.LinuxContainerResources, privileged bool) *specs.LinuxResources {
	out := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: privileged, Access: "rwm"}}}
	if privileged && r.host.deviceRules != nil {
		out.Devices = deviceCgroupRules(r.host.deviceRules)
	}
	if res == nil {
		return out
	}
	cpu := &specs.LinuxCPU{}
	if !r.host.controllerMissing("cpuset") {
		cpu.Cpus, cpu.Mems = res.CpusetCpus, res.CpusetMems
	}
	if res.CpuShares > 0 && !r.host.controllerMissing("cpu") {
		s := uint64(res.CpuShares)
		cpu.Shares = &s
	}
	if res.CpuQuota > 0 && !r.host.controllerMissing("cpu") {
		q := res.CpuQuota
		cpu.Quota = &q
	}
	if res.CpuPeriod > 0 && !r.host.controllerMissing("cpu") {
		p := uint64(res.CpuPeriod)
		cpu.Period = &p
	}
	out.CPU = cpu
	if res.MemoryLimitInBytes > 0 && !r.host.controllerMissing("memory") {
		l := res.MemoryLimitInBytes
		out.Memory = &specs.LinuxMemory{Limit: &l}
		if res.MemorySwapLimitInBytes > 0 {
			s := res.MemorySwapLimitInBytes
			out.Memory.Swap = &s
		}
	}
	if v, ok := res.Unified["pids.max"]; ok && !r.host.controllerMissing("pids") {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			out.Pids = &specs.LinuxPids{Limit: &n}
		}
	}
	return out
}

// seccompProfile picks the seccomp filter: RuntimeDefault (also when none
// is asked for: Skiff's hardened default) is moby's default profile,
// Unconfined none, Localhost the moby-format JSON file it names.
func seccompProfile(sc *runtimeapi.LinuxContainerSecurityContext, spec *specs.Spec) (*specs.LinuxSeccomp, error) {
	p := sc.GetSeccomp()
	typ := runtimeapi.SecurityProfile_RuntimeDefault
	ref := ""
	switch {
	case p != nil:
		typ, ref = p.ProfileType, p.LocalhostRef
	case sc.SeccompProfilePath == "unconfined":
		typ = runtimeapi.SecurityProfile_Unconfined
	case strings.HasPrefix(sc.SeccompProfilePath, "localhost/"):
		typ, ref = runtimeapi.SecurityProfile_Localhost, strings.TrimPrefix(sc.SeccompProfilePath, "localhost/")
	}
	switch typ {
	case runtimeapi.SecurityProfile_Unconfined:
		return nil, nil
	case runtimeapi.SecurityProfile_Localhost:
		b, err := os.ReadFile(ref)
		if err != nil {
			return nil, fmt.Errorf("seccomp profile: %w", err)
		}
		return seccompprofile.LoadProfile(string(b), spec)
	default:
		return seccompprofile.GetDefaultProfile(spec)
	}
}

// SeccompSupported reports whether this binary can apply seccomp profiles
// (it was built with CGO_ENABLED=1 -tags seccomp). Without it, only
// containers whose profile is Unconfined can run.
func SeccompSupported() bool { return seccompBuilt }

// stopSignal maps a CRI stop signal to a signal number (0: the default).
func stopSignal(s runtimeapi.Signal) unix.Signal {
	if s == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return 0
	}
	return unix.SignalNum(strings.TrimPrefix(s.String(), "SIGNAL_"))
}
