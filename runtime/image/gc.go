package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// GCPolicy says when images are garbage-collected: when the filesystem of
// the store is more than HighThresholdPercent full, unused images are
// removed, least recently used first, until it is at most
// LowThresholdPercent full (the kubelet's image GC thresholds).
type GCPolicy struct {
	HighThresholdPercent int
	LowThresholdPercent  int
}

// DefaultGCPolicy is the kubelet's default: 85% high, 80% low.
var DefaultGCPolicy = GCPolicy{HighThresholdPercent: 85, LowThresholdPercent: 80}

// GarbageCollect removes unused images (no container holds a lease on them,
// not pinned, not in keep) while disk usage is above the policy's high
// threshold, until it falls to the low threshold. It returns the IDs of the
// removed images.
func (s *Store) GarbageCollect(ctx context.Context, policy GCPolicy, keep ...string) ([]string, error) {
	if policy.HighThresholdPercent <= 0 || policy.HighThresholdPercent > 100 || policy.LowThresholdPercent < 0 || policy.LowThresholdPercent > policy.HighThresholdPercent {
		return nil, fmt.Errorf("image GC: invalid thresholds %d%%/%d%%", policy.HighThresholdPercent, policy.LowThresholdPercent)
	}
	capacity, used, err := s.opts.DiskUsage(s.root)
	if err != nil {
		return nil, fmt.Errorf("image GC: %w", err)
	}
	if capacity == 0 || used*100 <= capacity*uint64(policy.HighThresholdPercent) {
		return nil, nil
	}
	keepIDs := map[string]bool{}
	for _, k := range keep {
		if img, err := s.Get(k); err == nil {
			keepIDs[img.ID] = true
		}
	}
	leased, err := s.leasedImages()
	if err != nil {
		return nil, err
	}
	imgs, err := s.List()
	if err != nil {
		return nil, err
	}
	sort.SliceStable(imgs, func(i, j int) bool { return imgs[i].LastUsed.Before(imgs[j].LastUsed) })
	var removed []string
	for _, img := range imgs {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if used*100 <= capacity*uint64(policy.LowThresholdPercent) {
			break
		}
		if leased[img.ID] || img.Pinned || keepIDs[img.ID] {
			continue
		}
		if err := s.Remove(img.ID); err != nil {
			s.log.Warn("image GC: remove failed", "image", img.ID, "err", err)
			continue
		}
		s.log.Info("image GC: removed unused image", "image", img.ID, "tags", img.RepoTags)
		removed = append(removed, img.ID)
		if capacity, used, err = s.opts.DiskUsage(s.root); err != nil {
			return removed, fmt.Errorf("image GC: %w", err)
		}
	}
	return removed, nil
}

// RunGC collects garbage every interval until ctx ends (the kubelet's image
// GC loop); keep names images never to remove.
func (s *Store) RunGC(ctx context.Context, policy GCPolicy, interval time.Duration, keep ...string) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.GarbageCollect(ctx, policy, keep...); err != nil && ctx.Err() == nil {
				s.log.Warn("image GC failed", "err", err)
			}
		}
	}
}

// DiskUsage returns the bytes and inodes of all unpacked layers.
func (s *Store) DiskUsage() (bytes, inodes int64, err error) {
	dir := filepath.Join(s.root, "layers", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		li, err := s.readLayerInfo("sha256:" + e.Name())
		if err != nil {
			continue
		}
		bytes += li.Size
		inodes += li.Inodes
	}
	return bytes, inodes, nil
}
