package stats

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
	"github.com/opencontainers/cgroups/fscommon"
)

// v1Subsystems are the cgroup v1 hierarchies read for stats.
var v1Subsystems = []string{"cpu", "cpuacct", "memory", "pids"}

// statControllers limits the library's reads to what is reported; on v1
// memory is read by readV1Memory.
var (
	statControllers = &cgroups.StatsOptions{Controllers: cgroups.CPU | cgroups.Memory | cgroups.Pids}
	v1Controllers   = &cgroups.StatsOptions{Controllers: cgroups.CPU | cgroups.Pids}
)

// cgroupReader reads one cgroup's counters with the cgroup library's
// parsers (github.com/opencontainers/cgroups fs and fs2), under root
// (/sys/fs/cgroup, or a fixture tree in tests).
type cgroupReader struct {
	root string
	v2   bool
	// v1Mounts maps a v1 subsystem to its hierarchy's directory.
	v1Mounts map[string]string
}

// newCgroupReader finds the cgroup layout under root: v2 when root is a
// unified hierarchy (it has cgroup.controllers), else v1 with one
// hierarchy per subsystem (root/cpu, root/memory, ...; on the host the
// mount table says where each is).
func newCgroupReader(root string) *cgroupReader {
	r := &cgroupReader{root: root, v1Mounts: map[string]string{}}
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		r.v2 = true
		return r
	}
	for _, s := range v1Subsystems {
		dir := filepath.Join(root, s)
		if root == "/sys/fs/cgroup" {
			if mnt, err := cgroups.FindCgroupMountpoint("", s); err == nil {
				dir = mnt
			}
		}
		r.v1Mounts[s] = dir
	}
	return r
}

// version is 1 or 2.
func (r *cgroupReader) version() int {
	if r.v2 {
		return 2
	}
	return 1
}

// errCgroupGone: the cgroup does not exist (the container exited
// between listing and reading).
var errCgroupGone = errors.New("cgroup does not exist")

// read returns the counters of cgroup path (absolute within the
// hierarchy, as the runtime names it) and its memory limit (0: none).
func (r *cgroupReader) read(path string) (ContainerStatsCommon, uint64, error) {
	out := ContainerStatsCommon{Cgroup: path}
	var (
		st       *cgroups.Stats
		err      error
		oomKills uint64
	)
	cfg := &cgroups.Cgroup{Resources: &cgroups.Resources{}}
	if r.v2 {
		dir := filepath.Join(r.root, path)
		if _, serr := os.Stat(dir); serr != nil {
			return out, 0, fmt.Errorf("%s: %w", path, errCgroupGone)
		}
		m, merr := fs2.NewManager(cfg, dir)
		if merr != nil {
			return out, 0, merr
		}
		st, err = m.Stats(statControllers)
		oomKills, _ = fs2.OOMKillCount(dir) // memory.events; absent without the memory controller
	} else {
		paths := make(map[string]string, len(r.v1Mounts))
		for s, mnt := range r.v1Mounts {
			paths[s] = filepath.Join(mnt, path)
		}
		if _, serr := os.Stat(paths["memory"]); serr != nil {
			if _, serr := os.Stat(paths["cpuacct"]); serr != nil {
				return out, 0, fmt.Errorf("%s: %w", path, errCgroupGone)
			}
		}
		m, merr := fs.NewManager(cfg, paths)
		if merr != nil {
			return out, 0, merr
		}
		st, err = m.Stats(v1Controllers)
		if err == nil {
			st.MemoryStats, err = readV1Memory(paths["memory"])
		}
		oomKills, _ = fs.OOMKillCount(paths["memory"]) // memory.oom_control; absent on old kernels
	}
	if err != nil || st == nil {
		if err == nil {
			err = errors.New("no stats")
		}
		return out, 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	cpu := st.CpuStats
	out.CPU = CPUStats{
		UsageNanoSeconds:     cpu.CpuUsage.TotalUsage,
		UserNanoSeconds:      cpu.CpuUsage.UsageInUsermode,
		SystemNanoSeconds:    cpu.CpuUsage.UsageInKernelmode,
		Periods:              cpu.ThrottlingData.Periods,
		ThrottledPeriods:     cpu.ThrottlingData.ThrottledPeriods,
		ThrottledNanoSeconds: cpu.ThrottlingData.ThrottledTime,
	}
	out.Memory = memoryOf(st.MemoryStats, r.v2)
	out.Memory.OOMKills = oomKills
	out.Processes = st.PidsStats.Current
	limit := st.MemoryStats.Usage.Limit
	if limit >= 1<<62 { // "max", or v1's page-rounded "unlimited"
		limit = 0
	}
	return out, limit, nil
}

// memoryOf maps the library's memory stats to ours: v1's memory.stat keys
// are total_* for the hierarchy, v2's have no prefix and count the
// subtree anyway.
func memoryOf(m cgroups.MemoryStats, v2 bool) MemoryStats {
	key := func(v1, v2name string) uint64 {
		if v2 {
			return m.Stats[v2name]
		}
		if v, ok := m.Stats["total_"+v1]; ok {
			return v
		}
		return m.Stats[v1]
	}
	out := MemoryStats{
		Usage:           m.Usage.Usage,
		RSS:             key("rss", "anon"),
		Cache:           key("cache", "file"),
		PageFaults:      key("pgfault", "pgfault"),
		MajorPageFaults: key("pgmajfault", "pgmajfault"),
	}
	inactive := key("inactive_file", "inactive_file")
	if inactive < out.Usage {
		out.WorkingSet = out.Usage - inactive
	}
	if limit := m.Usage.Limit; limit > 0 && limit < 1<<62 && limit > out.WorkingSet {
		out.Available = limit - out.WorkingSet
	}
	return out
}

// readV1Memory reads the three v1 memory files the stats need
// (memory.stat, memory.usage_in_bytes, memory.limit_in_bytes) with the
// cgroup library's file helpers. The library's MemoryGroup.GetStats reads
// sixteen more (swap, kmem, kmem.tcp, max usage, fail counts, NUMA), half
// of a collection's cost on cgroupfs, for figures no endpoint reports.
func readV1Memory(dir string) (cgroups.MemoryStats, error) {
	out := cgroups.MemoryStats{Stats: map[string]uint64{}}
	stat, err := cgroups.ReadFile(dir, "memory.stat")
	if err != nil {
		if os.IsNotExist(err) {
			return out, nil // no memory hierarchy for this cgroup
		}
		return out, err
	}
	for _, line := range strings.Split(stat, "\n") {
		if line == "" {
			continue
		}
		k, v, err := fscommon.ParseKeyValue(line)
		if err != nil {
			return out, fmt.Errorf("%s/memory.stat: %w", dir, err)
		}
		out.Stats[k] = v
	}
	out.Cache = out.Stats["cache"]
	if out.Usage.Usage, err = fscommon.GetCgroupParamUint(dir, "memory.usage_in_bytes"); err != nil {
		return out, err
	}
	if out.Usage.Limit, err = fscommon.GetCgroupParamUint(dir, "memory.limit_in_bytes"); err != nil {
		return out, err
	}
	return out, nil
}
