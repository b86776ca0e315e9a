package stats

import (
	"context"
	"hash/fnv"
	"math"
	"time"
)

// FakeCollector makes plausible series for hollow nodes, whose containers
// do not exist: each container gets a steady CPU rate and a memory
// working set chosen from a hash of its ID, with a slow wobble; counters
// grow from the container's start. Node totals are the pods' sums plus a
// system share. It reads nothing from the machine.
type FakeCollector struct {
	// NumCPUs and MemoryCapacity are the node's (4 and 8 GiB when zero).
	NumCPUs        int
	MemoryCapacity uint64
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// NewFakeCollector returns a FakeCollector of a 4-core, 8 GiB node.
func NewFakeCollector() *FakeCollector { return &FakeCollector{} }

// Collect makes a snapshot of t.
func (f *FakeCollector) Collect(_ context.Context, t Targets) (*Snapshot, error) {
	now := time.Now()
	if f.Now != nil {
		now = f.Now()
	}
	cpus, capacity := f.NumCPUs, f.MemoryCapacity
	if cpus == 0 {
		cpus = 4
	}
	if capacity == 0 {
		capacity = 8 << 30
	}
	start := t.StartTime
	if start.IsZero() || start.After(now) {
		start = now
	}
	snap := &Snapshot{Time: now}
	up := now.Sub(start).Seconds()
	// The system's own share: 5% of a core and 300 MiB.
	node := ContainerStatsCommon{
		CPU:       CPUStats{UsageNanoSeconds: uint64(up * 0.05e9)},
		Memory:    MemoryStats{Usage: 400 << 20, WorkingSet: 300 << 20, RSS: 250 << 20, Cache: 100 << 20},
		Processes: 120,
	}
	var rx, tx uint64
	for _, pt := range t.Pods {
		ps := PodStats{Namespace: pt.Namespace, Name: pt.Name, UID: pt.UID, StartTime: pt.StartTime}
		ps.Cgroup = pt.Cgroup
		for _, ct := range pt.Containers {
			cs := ContainerStats{Name: ct.Name, ID: ct.ID, Image: ct.Image, StartTime: ct.StartTime, Restarts: ct.Restarts}
			cs.ContainerStatsCommon = fakeContainer(ct.ID, ct.StartTime, now, capacity)
			cs.Cgroup = ct.Cgroup
			cs.Rootfs = FsStats{Used: 64 << 10, InodesUsed: 12, Measured: now}
			add(&ps.ContainerStatsCommon, cs.ContainerStatsCommon)
			ps.Containers = append(ps.Containers, cs)
		}
		for _, v := range pt.Volumes {
			ps.Volumes = append(ps.Volumes, VolumeStats{Name: v.Name, ClaimNamespace: v.ClaimNamespace, ClaimName: v.ClaimName,
				FsStats: FsStats{Capacity: 100 << 30, Available: 60 << 30, Used: 4 << 10, Inodes: 6 << 20, InodesFree: 5 << 20, InodesUsed: 3, Measured: now}})
		}
		if !pt.HostNetwork && pt.StartTime.Before(now) {
			secs := now.Sub(pt.StartTime).Seconds()
			r := uint64(secs * 2048)
			ps.Network = []InterfaceStats{{Name: "eth0", RxBytes: r, RxPackets: r / 512, TxBytes: r / 2, TxPackets: r / 1024}}
			rx, tx = rx+r, tx+r/2
		}
		add(&node, ps.ContainerStatsCommon)
		snap.Pods = append(snap.Pods, ps)
	}
	snap.Node = NodeStats{
		Name: t.NodeName, BootTime: start, StartTime: t.StartTime, NumCPUs: cpus, MemoryCapacity: capacity,
		CPU: node.CPU, Memory: node.Memory, Processes: node.Processes,
		Fs:      FsStats{Capacity: 100 << 30, Available: 60 << 30, Used: 40 << 30, Inodes: 6 << 20, InodesFree: 5 << 20, InodesUsed: 1 << 20, Measured: now},
		Network: []InterfaceStats{{Name: "eth0", RxBytes: rx, TxBytes: tx}},
		Load:    LoadStats{0.3, 0.25, 0.2},
	}
	snap.Node.Memory.Available = capacity - min(capacity, snap.Node.Memory.WorkingSet)
	return snap, nil
}

// fakeContainer is one container's made-up counters at now.
func fakeContainer(id string, started, now time.Time, capacity uint64) ContainerStatsCommon {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	seed := h.Sum64()
	cores := 0.005 + float64(seed%200)/1000     // 5-205 millicores
	ws := float64(16<<20 + (seed>>8)%(240<<20)) // 16-256 MiB
	if started.IsZero() || started.After(now) {
		started = now
	}
	secs := now.Sub(started).Seconds()
	wobble := 1 + 0.05*math.Sin(secs/60+float64(seed%7))
	workingSet := uint64(ws * wobble)
	cpu := uint64(secs * cores * 1e9)
	return ContainerStatsCommon{
		CPU: CPUStats{UsageNanoSeconds: cpu, UserNanoSeconds: cpu * 4 / 5, SystemNanoSeconds: cpu / 5,
			Periods: uint64(secs * 10), ThrottledPeriods: 0},
		Memory: MemoryStats{Usage: workingSet + 8<<20, WorkingSet: workingSet, RSS: workingSet * 9 / 10, Cache: 8 << 20,
			Available: capacity - min(capacity, workingSet), PageFaults: uint64(secs * 10)},
		Processes: 1 + seed%4,
	}
}

// add sums counters into a pod's or the node's.
func add(to *ContainerStatsCommon, c ContainerStatsCommon) {
	to.CPU.UsageNanoSeconds += c.CPU.UsageNanoSeconds
	to.CPU.UserNanoSeconds += c.CPU.UserNanoSeconds
	to.CPU.SystemNanoSeconds += c.CPU.SystemNanoSeconds
	to.Memory.Usage += c.Memory.Usage
	to.Memory.WorkingSet += c.Memory.WorkingSet
	to.Memory.RSS += c.Memory.RSS
	to.Memory.Cache += c.Memory.Cache
	to.Processes += c.Processes
}
