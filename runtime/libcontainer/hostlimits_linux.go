package libcontainer

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/cgroups"
	devconfig "github.com/opencontainers/cgroups/devices/config"
)

// hostLimits is what this host withholds from the agent, and so from its
// containers, found once when the Runtime starts. Hosts that run Skiff
// inside LXC or Docker, or in a sandboxed VM, often drop capabilities from
// root's bounding set (CAP_SYS_RESOURCE is the usual one), mount only some
// cgroup controllers, or restrict devices. Containers then degrade instead
// of failing, as the kubelet does in a user namespace: each degradation is
// logged once and reported on the Node (Runtime.Degradations).
type hostLimits struct {
	// bounding are the capabilities of the agent's bounding set (CAP_*);
	// missingCaps the known ones it lacks. A container gets no capability
	// outside bounding (runc would fail to set it).
	bounding, missingCaps []string
	// oomFloor, when lowerOOM is false (no CAP_SYS_RESOURCE), is the
	// agent's own oom_score_adj: the lowest a container's init may ask for.
	lowerOOM bool
	oomFloor int
	// missingControllers are cgroup controllers this host does not offer;
	// the limits they would enforce are skipped.
	missingControllers []string
	// deviceRules, when the agent's own device cgroup does not allow every
	// device (cgroup v1), are its rules: a privileged container gets those
	// instead of all devices, which the kernel would refuse.
	deviceRules []*devconfig.Rule
	// missingSysctls are the kubelet's safe sysctls this kernel lacks; a
	// sysctl a pod asks for that the host lacks is skipped (runc would fail
	// the start on it).
	missingSysctls []string
}

// safeSysctls are the sysctls the kubelet allows every pod (its safe set).
var safeSysctls = []string{
	"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
	"net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports",
	"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
	"net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
}

// sysctlExists reports whether the host has sysctl name.
func sysctlExists(name string) bool {
	if name == "" || strings.Contains(name, "..") {
		return false
	}
	_, err := os.Stat(filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/")))
	return err == nil
}

// sysctls returns the pod's sysctls the host has, and the names of those
// it lacks.
func (h hostLimits) sysctls(in map[string]string) (map[string]string, []string) {
	var missing []string
	for k := range in {
		if !sysctlExists(k) {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return in, nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		if !slices.Contains(missing, k) {
			out[k] = v
		}
	}
	slices.Sort(missing)
	return out, missing
}

// controllersUsed are the cgroup controllers the runtime sets limits with.
var controllersUsed = []string{"cpu", "cpuset", "memory", "pids", "hugetlb"}

// detectHostLimits reads the agent process's capabilities, oom_score_adj,
// cgroup controllers and device cgroup.
func detectHostLimits() (hostLimits, error) {
	var h hostLimits
	caps, err := capability.NewPid2(0)
	if err != nil {
		return h, fmt.Errorf("host capabilities: %w", err)
	}
	if err := caps.Load(); err != nil {
		return h, fmt.Errorf("host capabilities: %w", err)
	}
	for _, c := range capability.ListKnown() {
		name := "CAP_" + strings.ToUpper(c.String())
		if caps.Get(capability.BOUNDING, c) {
			h.bounding = append(h.bounding, name)
		} else {
			h.missingCaps = append(h.missingCaps, name)
		}
	}
	h.lowerOOM = caps.Get(capability.EFFECTIVE, capability.CAP_SYS_RESOURCE)
	if !h.lowerOOM {
		b, err := os.ReadFile("/proc/self/oom_score_adj")
		if err != nil {
			return h, fmt.Errorf("own oom_score_adj: %w", err)
		}
		if h.oomFloor, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return h, fmt.Errorf("own oom_score_adj: %w", err)
		}
	}
	h.missingControllers = missingControllers()
	for _, name := range safeSysctls {
		if !sysctlExists(name) {
			h.missingSysctls = append(h.missingSysctls, name)
		}
	}
	if h.deviceRules, err = ownDeviceRules(); err != nil {
		return h, err
	}
	return h, nil
}

// missingControllers lists the controllers of controllersUsed the host
// does not offer (cgroup v2: not in the root's cgroup.controllers; v1: not
// mounted).
func missingControllers() []string {
	var have []string
	if cgroups.IsCgroup2UnifiedMode() {
		b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		if err != nil {
			return slices.Clone(controllersUsed)
		}
		have = strings.Fields(string(b))
	} else {
		for _, c := range controllersUsed {
			if _, err := cgroups.FindCgroupMountpoint("", c); err == nil {
				have = append(have, c)
			}
		}
	}
	var out []string
	for _, c := range controllersUsed {
		if !slices.Contains(have, c) {
			out = append(out, c)
		}
	}
	return out
}

// ownDeviceRules returns the agent's device cgroup rules when they do not
// allow every device (cgroup v1 only: v2 device rules are eBPF programs a
// child cannot widen, so asking for all devices there is harmless).
func ownDeviceRules() ([]*devconfig.Rule, error) {
	if cgroups.IsCgroup2UnifiedMode() {
		return nil, nil
	}
	own, err := cgroups.GetOwnCgroupPath("devices")
	if err != nil {
		// No device controller (nothing restricts devices), or the
		// agent's cgroup is not visible in this mount namespace.
		return nil, nil //nolint:nilerr // both mean: no restriction known
	}
	f, err := os.Open(filepath.Join(own, "devices.list"))
	if err != nil {
		return nil, nil //nolint:nilerr // as above
	}
	defer f.Close()
	var rules []*devconfig.Rule
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r, err := parseDeviceRule(sc.Text())
		if err != nil {
			return nil, err
		}
		if r.Type == devconfig.WildcardDevice && r.Major == devconfig.Wildcard && r.Minor == devconfig.Wildcard && r.Permissions == "rwm" {
			return nil, nil // a *:* rwm: everything allowed
		}
		rules = append(rules, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("own device cgroup: %w", err)
	}
	return rules, nil
}

// parseDeviceRule parses a devices.list line ("c 1:3 rwm", "b *:* m").
func parseDeviceRule(line string) (*devconfig.Rule, error) {
	f := strings.Fields(line)
	if len(f) != 3 || len(f[0]) != 1 {
		return nil, fmt.Errorf("device cgroup rule %q", line)
	}
	majmin := strings.SplitN(f[1], ":", 2)
	if len(majmin) != 2 {
		return nil, fmt.Errorf("device cgroup rule %q", line)
	}
	num := func(s string) (int64, error) {
		if s == "*" {
			return devconfig.Wildcard, nil
		}
		return strconv.ParseInt(s, 10, 64)
	}
	maj, err := num(majmin[0])
	if err != nil {
		return nil, fmt.Errorf("device cgroup rule %q: %w", line, err)
	}
	mnr, err := num(majmin[1])
	if err != nil {
		return nil, fmt.Errorf("device cgroup rule %q: %w", line, err)
	}
	return &devconfig.Rule{Type: devconfig.Type(f[0][0]), Major: maj, Minor: mnr, Permissions: devconfig.Permissions(f[2]), Allow: true}, nil
}

// degradations describes, one line each, what containers on this host
// will not get.
func (h hostLimits) degradations() []string {
	var out []string
	if len(h.missingCaps) > 0 {
		out = append(out, "capabilities not in the host's bounding set are dropped from containers: "+strings.Join(h.missingCaps, ","))
	}
	if !h.lowerOOM {
		out = append(out, fmt.Sprintf("no CAP_SYS_RESOURCE: container oom_score_adj is raised to at least the agent's %d", h.oomFloor))
	}
	if len(h.missingControllers) > 0 {
		out = append(out, "cgroup controllers unavailable, their limits are not enforced: "+strings.Join(h.missingControllers, ","))
	}
	if len(h.missingSysctls) > 0 {
		out = append(out, "sysctls this kernel lacks are skipped: "+strings.Join(h.missingSysctls, ","))
	}
	if h.deviceRules != nil {
		out = append(out, "the host's device cgroup is restricted: privileged containers get only the devices it allows")
	}
	return out
}

// clampCaps keeps the capabilities the host's bounding set has, returning
// the ones dropped.
func (h hostLimits) clampCaps(caps []string) (kept, dropped []string) {
	if len(h.missingCaps) == 0 {
		return caps, nil
	}
	for _, c := range caps {
		if slices.Contains(h.missingCaps, c) {
			dropped = append(dropped, c)
		} else {
			kept = append(kept, c)
		}
	}
	return kept, dropped
}

// clampOOMScoreAdj raises adj to the lowest value the host lets the
// container's init set.
func (h hostLimits) clampOOMScoreAdj(adj int) int {
	if h.lowerOOM || adj >= h.oomFloor {
		return adj
	}
	return h.oomFloor
}

// controllerMissing reports whether the host lacks cgroup controller c.
func (h hostLimits) controllerMissing(c string) bool {
	return slices.Contains(h.missingControllers, c)
}
