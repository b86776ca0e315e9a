package stats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// CgroupConfig configures NewCgroupCollector; zero values take the
// host's paths.
type CgroupConfig struct {
	// CgroupRoot is where the cgroup hierarchies are (/sys/fs/cgroup).
	CgroupRoot string
	// ProcRoot is procfs (/proc).
	ProcRoot string
	// FsInterval is the least time between two walks of one directory
	// (a container's writable layer, a volume); 10s by default.
	FsInterval time.Duration
	Logger     *slog.Logger
}

// cgroupCollector reads the cgroups and /proc.
type cgroupCollector struct {
	cg   *cgroupReader
	proc procfs.FS
	du   *duCache
	log  *slog.Logger
	// bootTime and pidMax are read once.
	bootTime time.Time
	pidMax   uint64
	// mountCache is the mount table, read at most once a minute.
	mountCache []*procfs.MountInfo
	mountRead  time.Time
}

// NewCgroupCollector returns the Collector that reads the machine.
func NewCgroupCollector(cfg CgroupConfig) (Collector, error) {
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "/sys/fs/cgroup"
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.FsInterval <= 0 {
		cfg.FsInterval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p, err := procfs.NewFS(cfg.ProcRoot)
	if err != nil {
		return nil, fmt.Errorf("procfs %s: %w", cfg.ProcRoot, err)
	}
	c := &cgroupCollector{cg: newCgroupReader(cfg.CgroupRoot), proc: p, du: newDUCache(cfg.FsInterval), log: cfg.Logger}
	if st, err := p.Stat(); err == nil {
		c.bootTime = time.Unix(int64(st.BootTime), 0)
	}
	if b, err := os.ReadFile(filepath.Join(cfg.ProcRoot, "sys", "kernel", "pid_max")); err == nil {
		c.pidMax, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	c.log.Info("stats collector", "cgroup", c.cg.version(), "cgroupRoot", cfg.CgroupRoot)
	return c, nil
}

// Collect measures the node and every target.
func (c *cgroupCollector) Collect(ctx context.Context, t Targets) (*Snapshot, error) {
	now := time.Now()
	snap := &Snapshot{Time: now}
	if err := c.node(t, now, &snap.Node); err != nil {
		return nil, err
	}
	for i := range t.Pods {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		ps, errs := c.pod(&t.Pods[i], now, snap.Node.Fs)
		snap.Errors += errs
		snap.Pods = append(snap.Pods, ps)
	}
	c.du.sweep()
	return snap, nil
}

// node reads the machine-wide figures from /proc and the data dir's
// filesystem.
func (c *cgroupCollector) node(t Targets, now time.Time, n *NodeStats) error {
	n.Name, n.BootTime, n.StartTime, n.NumCPUs, n.MaxPID = t.NodeName, c.bootTime, t.StartTime, runtime.NumCPU(), c.pidMax
	st, err := c.proc.Stat()
	if err != nil {
		return fmt.Errorf("/proc/stat: %w", err)
	}
	cpu := st.CPUTotal
	busy := cpu.User + cpu.Nice + cpu.System + cpu.IRQ + cpu.SoftIRQ + cpu.Steal
	n.CPU = CPUStats{
		UsageNanoSeconds:  uint64(busy * 1e9),
		UserNanoSeconds:   uint64((cpu.User + cpu.Nice) * 1e9),
		SystemNanoSeconds: uint64(cpu.System * 1e9),
	}
	mi, err := c.proc.Meminfo()
	if err != nil {
		return fmt.Errorf("/proc/meminfo: %w", err)
	}
	total, free, inactive := deref(mi.MemTotalBytes), deref(mi.MemFreeBytes), deref(mi.InactiveFileBytes)
	n.MemoryCapacity = total
	m := MemoryStats{Usage: total - min(free, total), Cache: deref(mi.CachedBytes) + deref(mi.BuffersBytes), RSS: deref(mi.AnonPagesBytes)}
	if inactive < m.Usage {
		m.WorkingSet = m.Usage - inactive
	}
	m.Available = total - min(m.WorkingSet, total)
	n.Memory = m
	if la, err := c.proc.LoadAvg(); err == nil {
		n.Load = LoadStats{la.Load1, la.Load5, la.Load15}
	}
	if nd, err := c.proc.NetDev(); err == nil {
		n.Network = interfaces(nd)
	}
	if t.DataDir != "" {
		if err := statfs(t.DataDir, &n.Fs); err != nil {
			return fmt.Errorf("data dir filesystem: %w", err)
		}
		n.Fs.Device = c.device(t.DataDir)
		n.Fs.Measured = now
	}
	if pids, err := c.countProcs(); err == nil {
		n.Processes = pids
	}
	return nil
}

// countProcs counts the processes on the node.
func (c *cgroupCollector) countProcs() (uint64, error) {
	procs, err := c.proc.AllProcs()
	if err != nil {
		return 0, err
	}
	return uint64(len(procs)), nil
}

// pod reads one pod; it returns how many of its parts failed.
func (c *cgroupCollector) pod(t *PodTarget, now time.Time, nodeFs FsStats) (PodStats, int) {
	ps := PodStats{Namespace: t.Namespace, Name: t.Name, UID: t.UID, StartTime: t.StartTime}
	errs := 0
	if t.Cgroup != "" {
		common, _, err := c.cg.read(t.Cgroup)
		if err != nil {
			errs++
			c.debug("pod cgroup", t, err)
		}
		ps.ContainerStatsCommon = common
	}
	if t.NetPID > 0 && !t.HostNetwork {
		nd, err := c.proc.Proc(t.NetPID)
		if err == nil {
			var dev procfs.NetDev
			if dev, err = nd.NetDev(); err == nil {
				ps.Network = interfaces(dev)
			}
		}
		if err != nil {
			errs++
			c.debug("pod network", t, err)
		}
	}
	for _, ct := range t.Containers {
		cs := ContainerStats{Name: ct.Name, ID: ct.ID, Image: ct.Image, StartTime: ct.StartTime, Restarts: ct.Restarts}
		common, limit, err := c.cg.read(ct.Cgroup)
		if err != nil {
			if errors.Is(err, errCgroupGone) {
				continue // exited between listing and reading
			}
			errs++
			c.debug("container cgroup "+ct.Name, t, err)
		}
		cs.ContainerStatsCommon, cs.MemoryLimit = common, limit
		if ct.WritableLayer != "" {
			cs.Rootfs = nodeFs
			if err := c.measure(ct.WritableLayer, now, &cs.Rootfs); err != nil {
				errs++
				c.debug("writable layer "+ct.Name, t, err)
			}
		}
		if ct.LogDir != "" {
			cs.Logs = nodeFs
			if err := c.measure(ct.LogDir, now, &cs.Logs); err != nil {
				cs.Logs = FsStats{} // no log yet
			}
		}
		ps.Containers = append(ps.Containers, cs)
	}
	for _, v := range t.Volumes {
		vs := VolumeStats{Name: v.Name, ClaimNamespace: v.ClaimNamespace, ClaimName: v.ClaimName}
		if err := statfs(v.Dir, &vs.FsStats); err != nil {
			errs++
			c.debug("volume "+v.Name, t, err)
			continue
		}
		vs.Device = c.device(v.Dir)
		if err := c.measure(v.Dir, now, &vs.FsStats); err != nil {
			errs++
			c.debug("volume "+v.Name, t, err)
			continue
		}
		ps.Volumes = append(ps.Volumes, vs)
	}
	return ps, errs
}

// measure walks dir (or takes its cached figures) into out.Used and
// out.InodesUsed.
func (c *cgroupCollector) measure(dir string, now time.Time, out *FsStats) error {
	used, inodes, at, err := c.du.usage(dir, now)
	if err != nil {
		return err
	}
	out.Used, out.InodesUsed, out.Measured = used, inodes, at
	return nil
}

func (c *cgroupCollector) debug(what string, t *PodTarget, err error) {
	c.log.Debug("stats: "+what, "pod", t.Namespace+"/"+t.Name, "err", err)
}

// device names the filesystem holding dir by its mount source.
func (c *cgroupCollector) device(dir string) string {
	mounts, err := c.mounts()
	if err != nil {
		return ""
	}
	best, src := "", ""
	for _, m := range mounts {
		if (dir == m.MountPoint || strings.HasPrefix(dir, strings.TrimSuffix(m.MountPoint, "/")+"/")) && len(m.MountPoint) >= len(best) {
			best, src = m.MountPoint, m.Source
		}
	}
	return src
}

// mounts reads the mount table (cached for a minute).
func (c *cgroupCollector) mounts() ([]*procfs.MountInfo, error) {
	if c.mountCache != nil && time.Since(c.mountRead) < time.Minute {
		return c.mountCache, nil
	}
	p, err := c.proc.Self()
	if err != nil {
		return nil, err
	}
	mi, err := p.MountInfo()
	if err != nil {
		return nil, err
	}
	c.mountCache, c.mountRead = mi, time.Now()
	return mi, nil
}

// interfaces lists a network namespace's interfaces but loopback, by name.
func interfaces(nd procfs.NetDev) []InterfaceStats {
	out := make([]InterfaceStats, 0, len(nd))
	for name, l := range nd {
		if name == "lo" {
			continue
		}
		out = append(out, InterfaceStats{
			Name: name, RxBytes: l.RxBytes, RxPackets: l.RxPackets, RxErrors: l.RxErrors, RxDrop: l.RxDropped,
			TxBytes: l.TxBytes, TxPackets: l.TxPackets, TxErrors: l.TxErrors, TxDrop: l.TxDropped,
		})
	}
	sortInterfaces(out)
	return out
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}
