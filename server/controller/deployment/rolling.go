package deployment

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/server/controller"
)

// rolloutRolling moves a RollingUpdate deployment one step: scale the new
// replica set up within maxSurge, or else the old ones down within
// maxUnavailable. Each step is one sync; the replica sets' updates bring
// the next.
func (c *Controller) rolloutRolling(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, oldRSs, err := c.getAllReplicaSetsAndSyncRevision(ctx, d, rsList, true)
	if err != nil {
		return err
	}
	allRSs := append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS)
	scaled, err := c.reconcileNewReplicaSet(ctx, allRSs, newRS, d)
	if err != nil {
		return err
	}
	if scaled != nil {
		return c.syncRolloutStatus(ctx, replace(allRSs, scaled), scaled, d)
	}
	allRSs, err = c.reconcileOldReplicaSets(ctx, allRSs, filterActive(oldRSs), newRS, d)
	if err != nil {
		return err
	}
	if deploymentComplete(d, &d.Status) {
		if err := c.cleanup(ctx, oldRSs, d); err != nil {
			return err
		}
	}
	return c.syncRolloutStatus(ctx, allRSs, newRS, d)
}

// replace returns rss with the set of rs's UID replaced by rs.
func replace(rss []*appsv1.ReplicaSet, rs *appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	out := make([]*appsv1.ReplicaSet, len(rss))
	for i, x := range rss {
		if x != nil && x.UID == rs.UID {
			x = rs
		}
		out[i] = x
	}
	return out
}

// activePods counts the active pods of rs in the cache.
func (c *Controller) activePods(rs *appsv1.ReplicaSet) int32 {
	var n int32
	for _, p := range controller.ByIndex[*corev1.Pod](c.podInf, controller.IndexControllerUID, string(rs.UID)) {
		if controller.IsPodActive(p) {
			n++
		}
	}
	return n
}

// newRSReplicas is the size the new replica set may grow to now: for
// RollingUpdate, up to replicas+maxSurge pods in all (each set counted as
// the larger of its spec.replicas and, when count is given, its active
// pods: a set scaled down a moment ago may still have its pods); for
// Recreate, all of spec.replicas.
func newRSReplicas(d *appsv1.Deployment, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, count func(*appsv1.ReplicaSet) int32) int32 {
	if !isRolling(d) {
		return *d.Spec.Replicas
	}
	var current int32
	for _, rs := range allRSs {
		if rs == nil {
			continue
		}
		n := replicas(rs)
		if count != nil {
			n = max(n, count(rs))
		}
		current += n
	}
	maxTotal := *d.Spec.Replicas + maxSurge(d)
	if current >= maxTotal {
		return replicas(newRS)
	}
	up := min(maxTotal-current, *d.Spec.Replicas-replicas(newRS))
	return replicas(newRS) + max(up, 0)
}

// reconcileNewReplicaSet scales the new set toward spec.replicas; it
// returns the scaled set, or nil when nothing changed.
func (c *Controller) reconcileNewReplicaSet(ctx context.Context, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) (*appsv1.ReplicaSet, error) {
	want := *d.Spec.Replicas
	cur := replicas(newRS)
	if cur == want {
		return nil, nil
	}
	n := want
	if cur < want {
		n = newRSReplicas(d, allRSs, newRS, c.activePods)
	}
	if n == cur {
		return nil, nil
	}
	return c.scaleReplicaSet(ctx, newRS, n, d)
}

// reconcileOldReplicaSets scales old sets down without going below
// replicas-maxUnavailable available pods: first the old sets' unhealthy
// pods, then healthy ones. It returns allRSs with the scaled sets.
func (c *Controller) reconcileOldReplicaSets(ctx context.Context, allRSs, oldRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
	if specSum(oldRSs) == 0 {
		return allRSs, nil
	}
	minAvailable := *d.Spec.Replicas - maxUnavailable(d)
	newUnavailable := replicas(newRS) - min(newRS.Status.AvailableReplicas, replicas(newRS))
	maxScaledDown := specSum(allRSs) - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return allRSs, nil
	}
	// Clean up unhealthy replicas of the old sets first.
	old := append([]*appsv1.ReplicaSet(nil), oldRSs...)
	byCreation(old)
	var cleaned int32
	for i, rs := range old {
		if cleaned >= maxScaledDown {
			break
		}
		if replicas(rs) == 0 || replicas(rs) == rs.Status.AvailableReplicas {
			continue
		}
		down := min(maxScaledDown-cleaned, replicas(rs)-rs.Status.AvailableReplicas)
		if down <= 0 {
			continue
		}
		n := replicas(rs) - down
		if n > replicas(rs) {
			return nil, fmt.Errorf("scaling down old replica set %s: %d > %d", rs.Name, n, replicas(rs))
		}
		out, err := c.scaleReplicaSet(ctx, rs, n, d)
		if err != nil {
			return nil, err
		}
		old[i] = out
		allRSs = replace(allRSs, out)
		cleaned += down
	}
	// Then scale down healthy pods while enough stay available.
	available := availableSum(allRSs)
	if available <= minAvailable {
		return allRSs, nil
	}
	total := min(available-minAvailable, maxScaledDown-cleaned)
	var done int32
	for _, rs := range old {
		if done >= total {
			break
		}
		if replicas(rs) == 0 {
			continue
		}
		down := min(replicas(rs), total-done)
		out, err := c.scaleReplicaSet(ctx, rs, replicas(rs)-down, d)
		if err != nil {
			return nil, err
		}
		allRSs = replace(allRSs, out)
		done += down
	}
	return allRSs, nil
}
