package deployment

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"github.com/skiff-io/skiff/server/controller"
)

// calculateStatus is the deployment's status for its replica sets.
func (c *Controller) calculateStatus(allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) appsv1.DeploymentStatus {
	var st appsv1.DeploymentStatus
	st.ObservedGeneration = d.Generation
	st.CollisionCount = d.Status.CollisionCount
	var specTotal int32
	for _, rs := range allRSs {
		if rs == nil {
			continue
		}
		st.Replicas += rs.Status.Replicas
		st.ReadyReplicas += rs.Status.ReadyReplicas
		st.AvailableReplicas += rs.Status.AvailableReplicas
		specTotal += replicas(rs)
	}
	if newRS != nil {
		st.UpdatedReplicas = newRS.Status.Replicas
	}
	st.UnavailableReplicas = max(specTotal-st.AvailableReplicas, 0)
	for _, cond := range d.Status.Conditions {
		st.Conditions = append(st.Conditions, *cond.DeepCopy())
	}
	now := controller.Now(c.cc.Now)
	if st.AvailableReplicas >= *d.Spec.Replicas-maxUnavailable(d) {
		setCondition(&st, appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue,
			Reason: reasonMinAvailable, Message: "Deployment has minimum availability.", LastUpdateTime: now, LastTransitionTime: now})
	} else {
		setCondition(&st, appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse,
			Reason: reasonMinUnavailable, Message: "Deployment does not have minimum availability.", LastUpdateTime: now, LastTransitionTime: now})
	}
	return st
}

// syncDeploymentStatus writes the status computed from the replica sets.
func (c *Controller) syncDeploymentStatus(ctx context.Context, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) error {
	st := c.calculateStatus(allRSs, newRS, d)
	if apiequality.Semantic.DeepEqual(d.Status, st) {
		return nil
	}
	cp := d.DeepCopy()
	cp.Status = st
	return c.updateStatus(ctx, cp)
}

// syncRolloutStatus writes the status with the Progressing condition
// (complete, progressing, or timed out past progressDeadlineSeconds) and
// the ReplicaFailure condition of the replica sets, and looks again when
// the deadline would pass.
func (c *Controller) syncRolloutStatus(ctx context.Context, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) error {
	st := c.calculateStatus(allRSs, newRS, d)
	now := controller.Now(c.cc.Now)
	if d.Spec.ProgressDeadlineSeconds == nil {
		removeCondition(&st, appsv1.DeploymentProgressing)
	} else {
		cur := getCondition(&d.Status, appsv1.DeploymentProgressing)
		complete := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == reasonNewRSAvailable
		if !complete {
			name := ""
			if newRS != nil {
				name = newRS.Name
			}
			switch {
			case deploymentComplete(d, &st):
				msg := "Deployment completed"
				if name != "" {
					msg = fmt.Sprintf("ReplicaSet %q has successfully progressed.", name)
				}
				setCondition(&st, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue,
					Reason: reasonNewRSAvailable, Message: msg, LastUpdateTime: now, LastTransitionTime: now})
			case deploymentProgressing(d, &st):
				msg := "Deployment is progressing."
				if name != "" {
					msg = fmt.Sprintf("ReplicaSet %q is progressing.", name)
				}
				cond := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue,
					Reason: reasonRSUpdated, Message: msg, LastUpdateTime: now, LastTransitionTime: now}
				if cur != nil && cur.Status == corev1.ConditionTrue {
					cond.LastTransitionTime = cur.LastTransitionTime
				}
				// Progress restarts the deadline: always refresh lastUpdateTime.
				removeCondition(&st, appsv1.DeploymentProgressing)
				st.Conditions = append(st.Conditions, cond)
			case c.timedOut(d, &st):
				msg := "Deployment has timed out progressing."
				if name != "" {
					msg = fmt.Sprintf("ReplicaSet %q has timed out progressing.", name)
				}
				setCondition(&st, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
					Reason: reasonTimedOut, Message: msg, LastUpdateTime: now, LastTransitionTime: now})
				if cur == nil || cur.Reason != reasonTimedOut {
					c.recorder.Event(d, corev1.EventTypeWarning, reasonTimedOut, msg)
				}
			}
		}
	}
	// Surface a replica set's failure to create or delete pods.
	var failure *appsv1.ReplicaSetCondition
	for _, rs := range allRSs {
		if rs == nil {
			continue
		}
		for i := range rs.Status.Conditions {
			if rc := rs.Status.Conditions[i]; rc.Type == appsv1.ReplicaSetReplicaFailure && rc.Status == corev1.ConditionTrue {
				failure = &rs.Status.Conditions[i]
			}
		}
	}
	if failure != nil {
		setCondition(&st, appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue,
			Reason: failure.Reason, Message: failure.Message, LastUpdateTime: failure.LastTransitionTime, LastTransitionTime: failure.LastTransitionTime})
	} else {
		removeCondition(&st, appsv1.DeploymentReplicaFailure)
	}
	if !apiequality.Semantic.DeepEqual(d.Status, st) {
		cp := d.DeepCopy()
		cp.Status = st
		if err := c.updateStatus(ctx, cp); err != nil {
			return err
		}
	}
	c.requeueStuck(d, &st)
	return nil
}

// deploymentComplete: every desired pod is updated and available, no old
// pod remains, and the latest spec is observed.
func deploymentComplete(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	want := *d.Spec.Replicas
	return st.UpdatedReplicas == want && st.Replicas == want && st.AvailableReplicas == want && st.ObservedGeneration >= d.Generation
}

// deploymentProgressing: the new status shows more updated, ready or
// available pods, or fewer old ones, than the stored one.
func deploymentProgressing(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	old := d.Status
	return st.UpdatedReplicas > old.UpdatedReplicas ||
		st.Replicas-st.UpdatedReplicas < old.Replicas-old.UpdatedReplicas ||
		st.ReadyReplicas > old.ReadyReplicas ||
		st.AvailableReplicas > old.AvailableReplicas
}

// timedOut: no progress for progressDeadlineSeconds since the Progressing
// condition was last updated.
func (c *Controller) timedOut(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	cond := getCondition(st, appsv1.DeploymentProgressing)
	if d.Spec.ProgressDeadlineSeconds == nil || cond == nil || cond.Reason == reasonNewRSAvailable {
		return false
	}
	if cond.Reason == reasonTimedOut {
		return true
	}
	deadline := cond.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second)
	return c.cc.Now().After(deadline)
}

// requeueStuck looks at a progressing deployment again when its deadline
// passes.
func (c *Controller) requeueStuck(d *appsv1.Deployment, st *appsv1.DeploymentStatus) {
	cond := getCondition(st, appsv1.DeploymentProgressing)
	if d.Spec.ProgressDeadlineSeconds == nil || cond == nil || cond.Reason == reasonTimedOut || deploymentComplete(d, st) {
		return
	}
	if cond.Reason == reasonPaused {
		return
	}
	after := cond.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second).Sub(c.cc.Now())
	key := d.Namespace + "/" + d.Name
	if after < time.Second {
		c.queue.AddRateLimited(key)
		return
	}
	c.queue.AddAfter(key, after+time.Second)
}
