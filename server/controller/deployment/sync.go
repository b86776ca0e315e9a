package deployment

import (
	"context"
	"fmt"
	"math"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cached, err := c.dLister.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	d := cached.DeepCopy()
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		c.recorder.Eventf(d, corev1.EventTypeWarning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.")
		if d.Status.ObservedGeneration < d.Generation {
			d.Status.ObservedGeneration = d.Generation
			_, err := c.cc.Client.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{})
			return err
		}
		return nil
	}
	rsList, err := c.claimReplicaSets(ctx, d, sel)
	if err != nil {
		return err
	}
	if d.DeletionTimestamp != nil {
		return c.syncStatusOnly(ctx, d, rsList)
	}
	if err := c.checkPausedConditions(ctx, d); err != nil {
		return err
	}
	if d.Spec.Paused {
		return c.syncPaused(ctx, d, rsList)
	}
	scaling, err := c.isScalingEvent(d, rsList)
	if err != nil {
		return err
	}
	if scaling {
		return c.syncScale(ctx, d, rsList)
	}
	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		return c.rolloutRecreate(ctx, d, rsList)
	default:
		return c.rolloutRolling(ctx, d, rsList)
	}
}

// claimReplicaSets returns the replica sets d controls, adopting and
// releasing as the selector says.
func (c *Controller) claimReplicaSets(ctx context.Context, d *appsv1.Deployment, sel labels.Selector) ([]*appsv1.ReplicaSet, error) {
	matching, err := c.rsLister.ReplicaSets(d.Namespace).List(sel)
	if err != nil {
		return nil, err
	}
	cl := &controller.Claimer{
		Owner: d, GVK: deploymentGVK, Selector: sel,
		Fresh: func(ctx context.Context) (metav1.Object, error) {
			return c.cc.Client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
		},
		Patch: func(ctx context.Context, ns, name string, p []byte) error {
			_, err := c.cc.Client.AppsV1().ReplicaSets(ns).Patch(ctx, name, types.StrategicMergePatchType, p, metav1.PatchOptions{})
			return err
		},
	}
	return controller.Claim(ctx, cl, controller.Candidates(matching, c.rsInf, d.UID, nil))
}

// syncStatusOnly refreshes the status of a deployment being deleted.
func (c *Controller) syncStatusOnly(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, oldRSs, err := c.getAllReplicaSetsAndSyncRevision(ctx, d, rsList, false)
	if err != nil {
		return err
	}
	return c.syncDeploymentStatus(ctx, append(oldRSs, newRS), newRS, d)
}

// syncPaused scales but does not roll out.
func (c *Controller) syncPaused(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, oldRSs, err := c.getAllReplicaSetsAndSyncRevision(ctx, d, rsList, false)
	if err != nil {
		return err
	}
	if err := c.scale(ctx, d, newRS, oldRSs); err != nil {
		return err
	}
	if err := c.cleanup(ctx, oldRSs, d); err != nil {
		return err
	}
	return c.syncDeploymentStatus(ctx, append(oldRSs, newRS), newRS, d)
}

// syncScale handles a change of spec.replicas alone.
func (c *Controller) syncScale(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, oldRSs, err := c.getAllReplicaSetsAndSyncRevision(ctx, d, rsList, false)
	if err != nil {
		return err
	}
	if err := c.scale(ctx, d, newRS, oldRSs); err != nil {
		return err
	}
	return c.syncDeploymentStatus(ctx, append(oldRSs, newRS), newRS, d)
}

// isScalingEvent: an active replica set was sized for another
// spec.replicas than the deployment's.
func (c *Controller) isScalingEvent(d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) (bool, error) {
	newRS := findNewReplicaSet(d, rsList)
	var oldRSs []*appsv1.ReplicaSet
	for _, rs := range rsList {
		if newRS == nil || rs.UID != newRS.UID {
			oldRSs = append(oldRSs, rs)
		}
	}
	for _, rs := range filterActive(append(oldRSs, newRS)) {
		if desired, ok := desiredAnnotation(rs); ok && desired != *d.Spec.Replicas {
			return true, nil
		}
	}
	return false, nil
}

func (c *Controller) checkPausedConditions(ctx context.Context, d *appsv1.Deployment) error {
	if d.Spec.ProgressDeadlineSeconds == nil {
		return nil
	}
	cond := getCondition(&d.Status, appsv1.DeploymentProgressing)
	if cond != nil && cond.Reason == reasonTimedOut {
		return nil
	}
	paused := cond != nil && cond.Reason == reasonPaused
	now := controller.Now(c.cc.Now)
	switch {
	case d.Spec.Paused && !paused:
		setCondition(&d.Status, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionUnknown,
			Reason: reasonPaused, Message: "Deployment is paused", LastUpdateTime: now, LastTransitionTime: now})
	case !d.Spec.Paused && paused:
		setCondition(&d.Status, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionUnknown,
			Reason: reasonResumed, Message: "Deployment is resumed", LastUpdateTime: now, LastTransitionTime: now})
	default:
		return nil
	}
	out, err := c.cc.Client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	*d = *out
	return nil
}

// scale resizes the replica sets of a deployment whose spec.replicas
// changed: the only active set takes it all, a saturated new set lets the
// old ones go to zero, and otherwise (mid-rollout) the change is shared
// in proportion to the sets' sizes, as Kubernetes does.
func (c *Controller) scale(ctx context.Context, d *appsv1.Deployment, newRS *appsv1.ReplicaSet, oldRSs []*appsv1.ReplicaSet) error {
	active := filterActive(append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS))
	want := *d.Spec.Replicas
	if len(active) <= 1 {
		target := newRS
		if len(active) == 1 {
			target = active[0]
		}
		if target == nil {
			return nil
		}
		if replicas(target) == want {
			if desired, ok := desiredAnnotation(target); ok && desired == want {
				return nil
			}
		}
		_, err := c.scaleReplicaSet(ctx, target, want, d)
		return err
	}
	if newRS != nil && replicas(newRS) == want && newRS.Status.AvailableReplicas == want {
		if desired, ok := desiredAnnotation(newRS); ok && desired == want {
			for _, rs := range filterActive(oldRSs) {
				if _, err := c.scaleReplicaSet(ctx, rs, 0, d); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if !isRolling(d) {
		return nil
	}
	current := specSum(active)
	allowed := int32(0)
	if want > 0 {
		allowed = want + maxSurge(d)
	}
	toAdd := allowed - current
	// Larger sets first; between sets of one size, newer first when
	// scaling up and older first when scaling down.
	sort.SliceStable(active, func(i, j int) bool {
		a, b := active[i], active[j]
		if replicas(a) != replicas(b) {
			return replicas(a) > replicas(b)
		}
		if a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.Name < b.Name
		}
		if toAdd > 0 {
			return b.CreationTimestamp.Before(&a.CreationTimestamp)
		}
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	})
	sizes := make([]int32, len(active))
	var added int32
	for i, rs := range active {
		sizes[i] = replicas(rs)
		if toAdd != 0 {
			share := proportion(rs, d, toAdd, added)
			sizes[i] += share
			added += share
		}
	}
	// The rounding leftover goes to the largest set.
	if left := toAdd - added; toAdd != 0 && left != 0 {
		sizes[0] = max(0, sizes[0]+left)
	}
	for i, rs := range active {
		if _, err := c.scaleReplicaSet(ctx, rs, sizes[i], d); err != nil {
			return err
		}
	}
	return nil
}

// proportion is rs's share of adding toAdd pods (added of them given to
// other sets already): its size scaled by the deployment's new maximum
// (replicas + maxSurge) over the maximum it was sized for (its max-replicas
// annotation), at most what is left to add or remove.
func proportion(rs *appsv1.ReplicaSet, d *appsv1.Deployment, toAdd, added int32) int32 {
	if replicas(rs) == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	var frac int32
	switch {
	case *d.Spec.Replicas == 0:
		frac = -replicas(rs)
	default:
		before, ok := maxReplicasAnnotation(rs)
		if !ok || before == 0 {
			before = d.Status.Replicas
		}
		if before != 0 {
			newMax := *d.Spec.Replicas + maxSurge(d)
			frac = int32(math.Round(float64(replicas(rs))*float64(newMax)/float64(before))) - replicas(rs)
		}
	}
	if toAdd > 0 {
		return min(frac, toAdd-added)
	}
	return max(frac, toAdd-added)
}

// scaleReplicaSet sets rs's spec.replicas and its desired and max
// replicas annotations; it returns the updated set.
func (c *Controller) scaleReplicaSet(ctx context.Context, rs *appsv1.ReplicaSet, n int32, d *appsv1.Deployment) (*appsv1.ReplicaSet, error) {
	sizeChanged := replicas(rs) != n
	cp := rs.DeepCopy()
	annChanged := setReplicasAnnotations(cp, *d.Spec.Replicas, *d.Spec.Replicas+maxSurge(d))
	if !sizeChanged && !annChanged {
		return rs, nil
	}
	cp.Spec.Replicas = &n
	out, err := c.cc.Client.AppsV1().ReplicaSets(cp.Namespace).Update(ctx, cp, metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	if sizeChanged {
		dir := "up"
		if n < replicas(rs) {
			dir = "down"
		}
		c.recorder.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d", dir, rs.Name, replicas(rs), n)
	}
	return out, nil
}

// cleanup deletes the oldest fully scaled-down replica sets beyond
// revisionHistoryLimit.
func (c *Controller) cleanup(ctx context.Context, oldRSs []*appsv1.ReplicaSet, d *appsv1.Deployment) error {
	if d.Spec.RevisionHistoryLimit == nil {
		return nil
	}
	var cleanable []*appsv1.ReplicaSet
	for _, rs := range oldRSs {
		if rs != nil && rs.DeletionTimestamp == nil && replicas(rs) == 0 && rs.Status.Replicas == 0 &&
			rs.Generation <= rs.Status.ObservedGeneration {
			cleanable = append(cleanable, rs)
		}
	}
	diff := len(cleanable) - int(*d.Spec.RevisionHistoryLimit)
	if diff <= 0 {
		return nil
	}
	sort.SliceStable(cleanable, func(i, j int) bool { return revision(cleanable[i]) < revision(cleanable[j]) })
	for _, rs := range cleanable[:diff] {
		err := c.cc.Client.AppsV1().ReplicaSets(rs.Namespace).Delete(ctx, rs.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &rs.UID, ResourceVersion: &rs.ResourceVersion},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete old replica set %s: %w", rs.Name, err)
		}
	}
	return nil
}
