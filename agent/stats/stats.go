// Package stats measures a node's resource use, as the kubelet's cAdvisor
// does, from the cgroups (v1 and v2) and /proc, and renders it in the
// kubelet's formats: the Summary API (/stats/summary), the resource
// metrics (/metrics/resource) and cAdvisor's metrics (/metrics/cadvisor).
//
// The parts, from the bottom:
//
//   - Targets says what to measure: the node's data dir, and for each pod
//     its cgroup, a process in its network namespace, its volumes'
//     directories, and each running container's cgroup and writable
//     layer. The kubelet (package agent) builds it from the runtime and
//     its pods.
//   - A Collector turns Targets into a Snapshot: the cumulative counters
//     and gauges at one instant. NewCgroupCollector (Linux) reads the
//     cgroups with github.com/opencontainers/cgroups and /proc with
//     github.com/prometheus/procfs; NewFakeCollector makes plausible
//     series for hollow nodes.
//   - Loop calls the collector every interval (10s by default), adds the
//     rates (CPU nanocores) from the previous Snapshot, and keeps the
//     latest. Readers call Latest; a Snapshot is never changed after it is
//     published, so readers share it without copying.
//
// Snapshot is the one type a consumer needs (the endpoints here, and a
// central store that scrapes or reads them): every counter is cumulative
// since the start of its cgroup, process or interface, every gauge is the
// value at Snapshot.Time, and every byte count is in bytes.
package stats

import (
	"context"
	"time"
)

// Snapshot is a node's resource use at one instant.
type Snapshot struct {
	// Time is when the collection started.
	Time time.Time
	Node NodeStats
	Pods []PodStats
	// Errors counts the targets that could not be measured in full
	// (a cgroup gone between listing and reading, a walk that failed).
	Errors int
}

// NodeStats is the whole machine's use.
type NodeStats struct {
	Name string
	// BootTime is the node's start (the Summary's node startTime).
	BootTime time.Time
	// NumCPUs and MemoryCapacity are the machine's.
	NumCPUs        int
	MemoryCapacity uint64
	CPU            CPUStats
	Memory         MemoryStats
	// Fs is the filesystem holding the data dir (images, containers'
	// writable layers, emptyDir volumes and logs).
	Fs        FsStats
	Network   []InterfaceStats
	Load      LoadStats
	Processes uint64
	MaxPID    uint64
	// StartTime is the kubelet's start.
	StartTime time.Time
}

// LoadStats is the load average.
type LoadStats struct{ Load1, Load5, Load15 float64 }

// PodStats is one pod's use: its cgroup's (which holds every container),
// its network namespace's and its volumes'.
type PodStats struct {
	Namespace, Name, UID string
	StartTime            time.Time
	ContainerStatsCommon
	// Network is the pod's interfaces (none for hostNetwork pods).
	Network    []InterfaceStats
	Containers []ContainerStats
	Volumes    []VolumeStats
}

// ContainerStatsCommon is what pods and containers share: their cgroup's
// counters.
type ContainerStatsCommon struct {
	// Cgroup is the cgroup path (cAdvisor's id label).
	Cgroup    string
	CPU       CPUStats
	Memory    MemoryStats
	Processes uint64
}

// ContainerStats is one running container's use.
type ContainerStats struct {
	Name, ID, Image string
	StartTime       time.Time
	// Restarts is the container's restart count.
	Restarts uint32
	ContainerStatsCommon
	// Rootfs is the container's writable layer: used bytes and inodes
	// measured, capacity and free those of its filesystem.
	Rootfs FsStats
	// Logs is the container's log directory.
	Logs FsStats
	// MemoryLimit is the cgroup's memory limit, 0 for none.
	MemoryLimit uint64
}

// CPUStats are cumulative CPU counters.
type CPUStats struct {
	// UsageNanoSeconds is the CPU time used, all cores.
	UsageNanoSeconds  uint64
	UserNanoSeconds   uint64
	SystemNanoSeconds uint64
	// UsageNanoCores is the rate over the last interval (0 on the first
	// snapshot of a target); Loop fills it.
	UsageNanoCores uint64
	// CFS throttling.
	Periods, ThrottledPeriods uint64
	ThrottledNanoSeconds      uint64
}

// MemoryStats are memory gauges and the OOM counter.
type MemoryStats struct {
	Usage uint64
	// WorkingSet is Usage less the inactive file cache (what the OOM
	// killer and eviction look at).
	WorkingSet      uint64
	RSS             uint64
	Cache           uint64
	PageFaults      uint64
	MajorPageFaults uint64
	// Available is limit (or the machine's memory) less WorkingSet.
	Available uint64
	// OOMKills counts the processes the OOM killer killed in the cgroup.
	OOMKills uint64
}

// InterfaceStats are one network interface's counters.
type InterfaceStats struct {
	Name                                 string
	RxBytes, RxPackets, RxErrors, RxDrop uint64
	TxBytes, TxPackets, TxErrors, TxDrop uint64
}

// FsStats is a directory's use and its filesystem's size.
type FsStats struct {
	// Device is the filesystem's mount point or source (cAdvisor's
	// device label); empty when unknown.
	Device                         string
	Capacity, Available, Used      uint64
	Inodes, InodesFree, InodesUsed uint64
	// Measured is when Used and InodesUsed were last measured (a
	// directory walk is cached between collections).
	Measured time.Time
}

// VolumeStats is one pod volume's use.
type VolumeStats struct {
	Name string
	// ClaimNamespace and ClaimName are set for persistentVolumeClaim
	// volumes.
	ClaimNamespace, ClaimName string
	FsStats
}

// Targets is what to measure on one node.
type Targets struct {
	NodeName string
	// DataDir is the directory whose filesystem is the node's (and the
	// runtime's) disk.
	DataDir string
	// StartTime is the kubelet's start.
	StartTime time.Time
	Pods      []PodTarget
}

// PodTarget is one pod to measure.
type PodTarget struct {
	Namespace, Name, UID string
	StartTime            time.Time
	// Cgroup is the pod's cgroup path (absolute within each hierarchy).
	Cgroup string
	// HostNetwork pods have no network of their own (none is reported).
	HostNetwork bool
	// NetPID is a process in the pod's network namespace; 0 when none is
	// known.
	NetPID     int
	Containers []ContainerTarget
	Volumes    []VolumeTarget
}

// ContainerTarget is one running container to measure.
type ContainerTarget struct {
	Name, ID, Image string
	StartTime       time.Time
	Restarts        uint32
	Cgroup          string
	// WritableLayer and LogDir are host directories to measure (empty:
	// not measured).
	WritableLayer, LogDir string
}

// VolumeTarget is one volume directory to measure.
type VolumeTarget struct {
	Name, Dir                 string
	ClaimNamespace, ClaimName string
}

// Collector measures targets. Collect may be called from one goroutine
// at a time; it returns a Snapshot even when some targets failed
// (counted in Snapshot.Errors), and an error only when nothing could be
// measured.
type Collector interface {
	Collect(ctx context.Context, t Targets) (*Snapshot, error)
}

// Source lists the targets (the kubelet implements it).
type Source interface {
	Targets(ctx context.Context) (Targets, error)
}

// Provider gives the latest snapshot; nil before the first collection.
type Provider interface {
	Latest() *Snapshot
}
