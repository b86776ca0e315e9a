package libcontainer

import (
	"context"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerStats reports a container's CPU and memory use from its cgroup
// and the size of its writable layer.
func (r *Runtime) ContainerStats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error) {
	c, err := r.getContainer(id)
	if err != nil {
		return nil, err
	}
	return r.stats(c), nil
}

// ListContainerStats reports the stats of the running containers matching
// filter.
func (r *Runtime) ListContainerStats(ctx context.Context, filter *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	f := &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}
	if filter != nil {
		f.Id, f.PodSandboxId, f.LabelSelector = filter.Id, filter.PodSandboxId, filter.LabelSelector
	}
	list, err := r.ListContainers(ctx, f)
	if err != nil {
		return nil, err
	}
	var out []*runtimeapi.ContainerStats
	for _, lc := range list {
		c, err := r.getContainer(lc.Id)
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, r.stats(c))
	}
	return out, nil
}

func (r *Runtime) stats(c *container) *runtimeapi.ContainerStats {
	cfg := c.config()
	now := time.Now().UnixNano()
	out := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id: c.ID, Metadata: cfg.GetMetadata(), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		},
		WritableLayer: r.writableLayer(c, now),
	}
	lc, err := libcontainer.Load(r.runcRoot, c.ID)
	if err != nil {
		return out // not running: no cgroup any more
	}
	st, err := lc.Stats()
	if err != nil || st.CgroupStats == nil {
		return out
	}
	cg := st.CgroupStats
	out.Cpu = &runtimeapi.CpuUsage{
		Timestamp:            now,
		UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: cg.CpuStats.CpuUsage.TotalUsage},
	}
	mem := cg.MemoryStats
	usage := mem.Usage.Usage
	workingSet := usage
	inactive := mem.Stats["total_inactive_file"]
	if v, ok := mem.Stats["inactive_file"]; ok && inactive == 0 {
		inactive = v
	}
	if inactive < workingSet {
		workingSet -= inactive
	} else {
		workingSet = 0
	}
	out.Memory = &runtimeapi.MemoryUsage{
		Timestamp:       now,
		WorkingSetBytes: &runtimeapi.UInt64Value{Value: workingSet},
		UsageBytes:      &runtimeapi.UInt64Value{Value: usage},
		RssBytes:        &runtimeapi.UInt64Value{Value: mem.Stats["total_rss"] + mem.Stats["rss"]},
		PageFaults:      &runtimeapi.UInt64Value{Value: mem.Stats["total_pgfault"] + mem.Stats["pgfault"]},
		MajorPageFaults: &runtimeapi.UInt64Value{Value: mem.Stats["total_pgmajfault"] + mem.Stats["pgmajfault"]},
	}
	if limit := mem.Usage.Limit; limit > 0 && limit < 1<<62 && limit > workingSet {
		out.Memory.AvailableBytes = &runtimeapi.UInt64Value{Value: limit - workingSet}
	}
	return out
}

// writableLayer measures the container's upper directory.
func (r *Runtime) writableLayer(c *container, now int64) *runtimeapi.FilesystemUsage {
	upper := filepath.Join(r.dirOf(c.ID), "upper")
	var bytes, inodes uint64
	_ = filepath.WalkDir(upper, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		inodes++
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			bytes += uint64(info.Size())
		}
		return nil
	})
	return &runtimeapi.FilesystemUsage{
		Timestamp:  now,
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: upper},
		UsedBytes:  &runtimeapi.UInt64Value{Value: bytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: inodes},
	}
}
