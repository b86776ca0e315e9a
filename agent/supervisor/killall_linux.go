package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skiff-io/skiff/nettools"
	"github.com/skiff-io/skiff/nettools/nft"
	"github.com/skiff-io/skiff/nettools/routes"
)

// KillallConfig says what `skiff killall` stops.
type KillallConfig struct {
	// DataDir is the server's or agent's data dir: its lock names the
	// process to stop, its pod directories the pods' cgroups, and shims
	// and mounts under it are Skiff's.
	DataDir string
	// CgroupParent is Skiff's cgroup parent ("/skiff"): the pods' cgroups
	// are looked for below it, and once they are removed every empty
	// cgroup below it goes too (those holding processes of another data
	// dir stay), unless KeepEmptyCgroups.
	CgroupParent     string
	KeepEmptyCgroups bool
	// ServiceCIDR: addresses of it on lo are the cluster DNS's and the
	// userspace proxy's.
	ServiceCIDR netip.Prefix
	Logger      *slog.Logger
}

// vethPattern is the host end of a pod's veth (nettools: "sk" + 12 hex).
var vethPattern = regexp.MustCompile(`^sk[0-9a-f]{12}$`)

// Killall stops everything Skiff started on this host for cfg.DataDir,
// in the calling process's network namespace: the server or agent
// holding the data dir (SIGTERM, then SIGKILL after 20s), the pods'
// processes (killed through their cgroups, which are then removed), the
// shims, every mount under the data dir, the bridge, the VXLAN device and
// the pods' veths, the nftables tables skiff-*, the routes of Skiff's
// protocol and the service addresses on lo. The data itself stays. It
// goes on after a failed step and returns every error.
func Killall(cfg KillallConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	var errs []error
	if err := stopHolder(dataDir, log); err != nil {
		errs = append(errs, err)
	}
	if err := killPods(dataDir, cfg.CgroupParent, cfg.KeepEmptyCgroups, log); err != nil {
		errs = append(errs, err)
	}
	if err := killShims(dataDir, log); err != nil {
		errs = append(errs, err)
	}
	if err := UnmountUnder(dataDir, log); err != nil {
		errs = append(errs, err)
	}
	if err := cleanNetwork(cfg.ServiceCIDR, log); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// stopHolder stops the process holding the data dir's lock.
func stopHolder(dataDir string, log *slog.Logger) error {
	path := filepath.Join(dataDir, "skiff.lock")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data dir lock: %w", err)
	}
	defer f.Close()
	free := func() bool {
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
			return true
		}
		return false
	}
	if free() {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var pid int
	if _, err := fmt.Sscanf(string(b), "pid %d", &pid); err != nil || pid <= 1 {
		return fmt.Errorf("data dir %s is locked by an unknown process (%q)", dataDir, strings.TrimSpace(string(b)))
	}
	log.Info("stopping the skiff process of the data dir", "pid", pid)
	if err := unix.Kill(pid, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("stop pid %d: %w", pid, err)
	}
	if waitFor(20*time.Second, free) {
		return nil
	}
	log.Warn("the skiff process did not stop within 20s of SIGTERM: killing it", "pid", pid)
	_ = unix.Kill(pid, unix.SIGKILL)
	if !waitFor(10*time.Second, free) {
		return fmt.Errorf("data dir %s is still locked after killing pid %d", dataDir, pid)
	}
	return nil
}

func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// cgroupMounts lists the mount points of the cgroup file systems.
func cgroupMounts() ([]string, error) {
	return mountPoints(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
}

// mountPoints lists the mount points /proc/self/mountinfo shows through
// filter (moby/sys/mountinfo parses it, escapes included).
func mountPoints(filter mountinfo.FilterFunc) ([]string, error) {
	ms, err := mountinfo.GetMounts(filter)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out, nil
}

// killPods kills the processes of the data dir's pods through their
// cgroups under the cgroup parent and removes those cgroups, then every
// empty cgroup under the parent.
func killPods(dataDir, parent string, keepEmpty bool, log *slog.Logger) error {
	if parent == "" {
		parent = "/skiff"
	}
	uids := map[string]bool{}
	entries, err := os.ReadDir(filepath.Join(dataDir, "agent", "pods"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		uids["pod"+e.Name()] = true
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	var podDirs, all []string
	for _, m := range mounts {
		root := filepath.Join(m, parent)
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			all = append(all, p)
			if uids[d.Name()] {
				podDirs = append(podDirs, p)
			}
			return nil
		})
	}
	killed := 0
	if !waitFor(10*time.Second, func() bool {
		left := 0
		for _, dir := range podDirs {
			for _, pid := range cgroupPIDs(dir) {
				if unix.Kill(pid, unix.SIGKILL) == nil {
					killed++
				}
				left++
			}
		}
		return left == 0
	}) {
		return fmt.Errorf("processes of pods still running after SIGKILL")
	}
	if keepEmpty {
		all = podDirs
	}
	// Deepest first; a cgroup with processes of another data dir stays.
	slices.SortFunc(all, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	removed := 0
	var errs []error
	for _, dir := range all {
		err := unix.Rmdir(dir)
		switch {
		case err == nil:
			removed++
		case errors.Is(err, unix.ENOENT):
		case errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOTEMPTY):
			if slices.Contains(podDirs, dir) {
				errs = append(errs, fmt.Errorf("pod cgroup %s: %w", dir, err))
			}
		default:
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	log.Info("pods stopped", "pods", len(uids), "processes killed", killed, "cgroups removed", removed)
	return errors.Join(errs...)
}

// cgroupPIDs lists the processes in dir and the cgroups below it.
func cgroupPIDs(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return nil
	})
	return pids
}

// killShims kills the container shims of the data dir ("skiff-shim" with
// a container directory under it).
func killShims(dataDir string, log *slog.Logger) error {
	prefix := dataDir + string(filepath.Separator)
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	killed := 0
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) < 2 || args[0] != "skiff-shim" || !slices.ContainsFunc(args[1:], func(a string) bool { return strings.HasPrefix(a, prefix) }) {
			continue
		}
		if unix.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	if killed > 0 {
		log.Info("shims killed", "count", killed)
	}
	return nil
}

// UnmountUnder detaches every mount at or below dir, deepest first.
func UnmountUnder(dir string, log *slog.Logger) error {
	targets, err := mountPoints(mountinfo.PrefixFilter(dir))
	if err != nil {
		return err
	}
	slices.SortFunc(targets, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, t := range slices.Compact(targets) {
		if err := unix.Unmount(t, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", t, err))
		}
	}
	if len(targets) > 0 {
		log.Info("mounts detached", "count", len(targets))
	}
	return errors.Join(errs...)
}

// cleanNetwork removes Skiff's links, routes, lo addresses and nftables
// tables from the calling process's network namespace.
func cleanNetwork(serviceCIDR netip.Prefix, log *slog.Logger) error {
	var errs []error
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("links: %w", err)
	}
	deleted := 0
	for _, l := range links {
		name := l.Attrs().Name
		if name == nettools.DefaultBridge || name == routes.VXLANDevice || (l.Type() == "veth" && vethPattern.MatchString(name)) {
			// A pod's veth goes with its network namespace, which the pod's
			// end may just have taken.
			if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("delete link %s: %w", name, err))
				continue
			}
			deleted++
		}
	}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: routes.RouteProtocol, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		errs = append(errs, fmt.Errorf("routes: %w", err))
	}
	for _, r := range rs {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
		}
	}
	addrs := 0
	if lo, err := netlink.LinkByName("lo"); err == nil && serviceCIDR.IsValid() {
		list, err := netlink.AddrList(lo, netlink.FAMILY_ALL)
		if err != nil {
			errs = append(errs, fmt.Errorf("addresses of lo: %w", err))
		}
		for _, a := range list {
			ip, ok := netip.AddrFromSlice(a.IP)
			if ok && serviceCIDR.Contains(ip.Unmap()) {
				if err := netlink.AddrDel(lo, &a); err != nil {
					errs = append(errs, fmt.Errorf("remove %s from lo: %w", a.IPNet, err))
					continue
				}
				addrs++
			}
		}
	}
	tables := 0
	c, closeNS, err := nft.Dial("")
	if err != nil {
		errs = append(errs, fmt.Errorf("nftables: %w", err))
	} else {
		defer closeNS()
		ts, err := c.ListTables()
		if err != nil {
			errs = append(errs, fmt.Errorf("nftables tables: %w", err))
		}
		for _, t := range ts {
			if strings.HasPrefix(t.Name, "skiff-") {
				if err := nft.DeleteTable(c, &nftables.Table{Name: t.Name, Family: t.Family}); err != nil {
					errs = append(errs, fmt.Errorf("delete nftables table %s: %w", t.Name, err))
					continue
				}
				tables++
			}
		}
	}
	log.Info("network cleaned", "links", deleted, "routes", len(rs), "lo addresses", addrs, "nftables tables", tables)
	return errors.Join(errs...)
}
