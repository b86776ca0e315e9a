package stats

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// Summary renders a snapshot as the kubelet's Summary API
// (/stats/summary, k8s.io/kubelet/pkg/apis/stats/v1alpha1).
func Summary(s *Snapshot) *statsapi.Summary {
	t := metav1.NewTime(s.Time)
	n := &s.Node
	out := &statsapi.Summary{Node: statsapi.NodeStats{
		NodeName:  n.Name,
		StartTime: metav1.NewTime(n.BootTime),
		CPU:       cpuStats(t, n.CPU),
		Memory:    memoryStats(t, n.Memory),
		Network:   networkStats(t, n.Network),
		Fs:        fsStats(n.Fs),
	}}
	out.Node.Runtime = &statsapi.RuntimeStats{ImageFs: fsStats(n.Fs), ContainerFs: fsStats(n.Fs)}
	procs := int64(n.Processes)
	out.Node.Rlimit = &statsapi.RlimitStats{Time: t, NumOfRunningProcesses: &procs}
	if n.MaxPID > 0 {
		m := int64(n.MaxPID)
		out.Node.Rlimit.MaxPID = &m
	}
	if !n.StartTime.IsZero() {
		out.Node.SystemContainers = []statsapi.ContainerStats{{Name: statsapi.SystemContainerKubelet, StartTime: metav1.NewTime(n.StartTime)}}
	}
	out.Pods = make([]statsapi.PodStats, 0, len(s.Pods))
	for i := range s.Pods {
		p := &s.Pods[i]
		ps := statsapi.PodStats{
			PodRef:     statsapi.PodReference{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
			StartTime:  metav1.NewTime(p.StartTime),
			Containers: make([]statsapi.ContainerStats, 0, len(p.Containers)),
			CPU:        cpuStats(t, p.CPU),
			Memory:     memoryStats(t, p.Memory),
			Network:    networkStats(t, p.Network),
		}
		procs := p.Processes
		ps.ProcessStats = &statsapi.ProcessStats{ProcessCount: &procs}
		var eph FsStats
		ephSet := false
		for _, c := range p.Containers {
			cs := statsapi.ContainerStats{
				Name:      c.Name,
				StartTime: metav1.NewTime(c.StartTime),
				CPU:       cpuStats(t, c.CPU),
				Memory:    memoryStats(t, c.Memory),
			}
			if !c.Rootfs.Measured.IsZero() {
				cs.Rootfs = fsStats(c.Rootfs)
				eph, ephSet = sumFs(eph, c.Rootfs, ephSet), true
			}
			if !c.Logs.Measured.IsZero() {
				cs.Logs = fsStats(c.Logs)
				eph, ephSet = sumFs(eph, c.Logs, ephSet), true
			}
			ps.Containers = append(ps.Containers, cs)
		}
		for _, v := range p.Volumes {
			vs := statsapi.VolumeStats{Name: v.Name, FsStats: *fsStats(v.FsStats)}
			if v.ClaimName != "" {
				vs.PVCRef = &statsapi.PVCReference{Name: v.ClaimName, Namespace: v.ClaimNamespace}
			} else {
				// Ephemeral storage: writable layers, logs and the
				// pod's own volumes (emptyDir, configMap, ...).
				eph, ephSet = sumFs(eph, v.FsStats, ephSet), true
			}
			ps.VolumeStats = append(ps.VolumeStats, vs)
		}
		if ephSet {
			ps.EphemeralStorage = fsStats(eph)
		}
		out.Pods = append(out.Pods, ps)
	}
	return out
}

func u64(v uint64) *uint64 { return &v }

func cpuStats(t metav1.Time, c CPUStats) *statsapi.CPUStats {
	return &statsapi.CPUStats{Time: t, UsageNanoCores: u64(c.UsageNanoCores), UsageCoreNanoSeconds: u64(c.UsageNanoSeconds)}
}

func memoryStats(t metav1.Time, m MemoryStats) *statsapi.MemoryStats {
	out := &statsapi.MemoryStats{
		Time: t, UsageBytes: u64(m.Usage), WorkingSetBytes: u64(m.WorkingSet), RSSBytes: u64(m.RSS),
		PageFaults: u64(m.PageFaults), MajorPageFaults: u64(m.MajorPageFaults),
	}
	if m.Available > 0 {
		out.AvailableBytes = u64(m.Available)
	}
	return out
}

func networkStats(t metav1.Time, ifs []InterfaceStats) *statsapi.NetworkStats {
	if len(ifs) == 0 {
		return nil
	}
	out := &statsapi.NetworkStats{Time: t}
	for _, i := range ifs {
		out.Interfaces = append(out.Interfaces, statsapi.InterfaceStats{
			Name: i.Name, RxBytes: u64(i.RxBytes), RxErrors: u64(i.RxErrors), TxBytes: u64(i.TxBytes), TxErrors: u64(i.TxErrors),
		})
	}
	// The default interface: eth0 when there is one (a pod's), else the
	// first.
	out.InterfaceStats = out.Interfaces[0]
	for _, i := range out.Interfaces {
		if i.Name == "eth0" {
			out.InterfaceStats = i
		}
	}
	return out
}

func fsStats(f FsStats) *statsapi.FsStats {
	at := f.Measured
	if at.IsZero() {
		at = time.Now()
	}
	return &statsapi.FsStats{
		Time: metav1.NewTime(at), AvailableBytes: u64(f.Available), CapacityBytes: u64(f.Capacity), UsedBytes: u64(f.Used),
		InodesFree: u64(f.InodesFree), Inodes: u64(f.Inodes), InodesUsed: u64(f.InodesUsed),
	}
}

// sumFs adds b's use to a (the filesystem's size is b's).
func sumFs(a, b FsStats, set bool) FsStats {
	if !set {
		return b
	}
	a.Used += b.Used
	a.InodesUsed += b.InodesUsed
	a.Capacity, a.Available, a.Inodes, a.InodesFree = b.Capacity, b.Available, b.Inodes, b.InodesFree
	if b.Measured.After(a.Measured) {
		a.Measured = b.Measured
	}
	return a
}
