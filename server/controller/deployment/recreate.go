package deployment

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/server/controller"
)

// rolloutRecreate scales every old replica set to zero, waits until their
// pods are gone, then creates (or scales up) the new one.
func (c *Controller) rolloutRecreate(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, oldRSs, err := c.getAllReplicaSetsAndSyncRevision(ctx, d, rsList, false)
	if err != nil {
		return err
	}
	allRSs := append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS)
	scaledDown := false
	for _, rs := range filterActive(oldRSs) {
		out, err := c.scaleReplicaSet(ctx, rs, 0, d)
		if err != nil {
			return err
		}
		allRSs = replace(allRSs, out)
		scaledDown = true
	}
	if scaledDown || c.oldPodsRunning(newRS, oldRSs) {
		return c.syncRolloutStatus(ctx, allRSs, newRS, d)
	}
	if newRS == nil {
		if newRS, oldRSs, err = c.getAllReplicaSetsAndSyncRevision(ctx, d, rsList, true); err != nil {
			return err
		}
		allRSs = append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS)
	}
	if replicas(newRS) != *d.Spec.Replicas {
		out, err := c.scaleReplicaSet(ctx, newRS, *d.Spec.Replicas, d)
		if err != nil {
			return err
		}
		allRSs, newRS = replace(allRSs, out), out
	}
	if deploymentComplete(d, &d.Status) {
		if err := c.cleanup(ctx, oldRSs, d); err != nil {
			return err
		}
	}
	return c.syncRolloutStatus(ctx, allRSs, newRS, d)
}

// oldPodsRunning reports whether any pod of an old set is not finished
// (terminating pods count: Recreate waits until they are gone).
func (c *Controller) oldPodsRunning(newRS *appsv1.ReplicaSet, oldRSs []*appsv1.ReplicaSet) bool {
	for _, rs := range oldRSs {
		if rs.Status.Replicas > 0 {
			return true
		}
		for _, p := range controller.ByIndex[*corev1.Pod](c.podInf, controller.IndexControllerUID, string(rs.UID)) {
			if !controller.IsPodTerminal(p) {
				return true
			}
		}
	}
	return false
}
