package replicaset

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	rs, err := c.kind.get(ns, name)
	if apierrors.IsNotFound(err) {
		c.exp.Delete(key)
		return nil
	}
	if err != nil {
		return err
	}
	needsSync := c.exp.Satisfied(key)
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		c.recorder.Eventf(c.kind.original(rs), corev1.EventTypeWarning, "InvalidSelector", "invalid selector: %v", err)
		return nil
	}
	pods, err := c.claimPods(ctx, rs, sel)
	if err != nil {
		return err
	}
	var manageErr error
	if needsSync && rs.DeletionTimestamp == nil {
		manageErr = c.manage(ctx, key, rs, pods)
	}
	now := c.cc.Now()
	st := calculateStatus(rs, pods, manageErr, now)
	if !apiequality.Semantic.DeepEqual(st, rs.Status) {
		if err := c.kind.updateStatus(ctx, rs, st); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if manageErr == nil && rs.Spec.MinReadySeconds > 0 && st.ReadyReplicas != st.AvailableReplicas {
		// Look again when the ready pods become available.
		var next time.Duration
		for _, p := range pods {
			if d := controller.AvailableIn(p, rs.Spec.MinReadySeconds, now); d > 0 && (next == 0 || d < next) {
				next = d
			}
		}
		if next > 0 {
			c.queue.AddAfter(key, next+100*time.Millisecond)
		}
	}
	return manageErr
}

// claimPods returns the active pods the set controls, after adopting
// matching orphans and releasing pods that stopped matching.
func (c *Controller) claimPods(ctx context.Context, rs *appsv1.ReplicaSet, sel labels.Selector) ([]*corev1.Pod, error) {
	return c.cc.ClaimPods(ctx, c.podInf, rs, c.kind.gvk, sel, func(ctx context.Context) (metav1.Object, error) {
		return c.kind.fresh(ctx, rs.Namespace, rs.Name)
	}, controller.IsPodActive)
}

// manage creates or deletes pods so that the set has spec.replicas.
func (c *Controller) manage(ctx context.Context, key string, rs *appsv1.ReplicaSet, pods []*corev1.Pod) error {
	want := int(*rs.Spec.Replicas)
	diff := len(pods) - want
	orig := c.kind.original(rs)
	switch {
	case diff < 0:
		n := min(-diff, BurstReplicas)
		c.exp.ExpectCreationsAndDeletions(key, n, nil)
		ref := controller.OwnerRef(rs, c.kind.gvk)
		created, err := controller.CreatePods(ctx, c.cc.Client, rs.Namespace, n, func(int) *corev1.Pod {
			return controller.PodFromTemplate(&rs.Spec.Template, rs, &ref)
		})
		for _, p := range created {
			c.recorder.Eventf(orig, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", p.Name)
		}
		if skipped := n - len(created); skipped > 0 {
			c.exp.Lower(key, skipped, 0)
		}
		if err != nil {
			if controller.IsNamespaceTerminating(err) {
				return nil
			}
			c.recorder.Eventf(orig, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
			return err
		}
	case diff > 0:
		n := min(diff, BurstReplicas)
		victims := append([]*corev1.Pod(nil), pods...)
		controller.SortForDeletion(victims)
		victims = victims[:n]
		keys := make([]string, len(victims))
		for i, p := range victims {
			keys[i] = p.Namespace + "/" + p.Name
		}
		c.exp.ExpectCreationsAndDeletions(key, 0, keys)
		errs := make([]error, len(victims))
		var wg sync.WaitGroup
		for i, p := range victims {
			wg.Add(1)
			go func(i int, p *corev1.Pod) {
				defer wg.Done()
				err := c.cc.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
					Preconditions: &metav1.Preconditions{UID: &p.UID},
				})
				if err != nil && !apierrors.IsNotFound(err) {
					c.exp.PodDeletionObserved(key, keys[i])
					errs[i] = err
					return
				}
				c.recorder.Eventf(orig, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", p.Name)
			}(i, p)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				c.recorder.Eventf(orig, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
				return err
			}
		}
	}
	return nil
}

// calculateStatus returns the set's status for its claimed active pods.
func calculateStatus(rs *appsv1.ReplicaSet, pods []*corev1.Pod, manageErr error, now time.Time) appsv1.ReplicaSetStatus {
	st := *rs.Status.DeepCopy()
	tmplSel := labels.SelectorFromSet(rs.Spec.Template.Labels)
	st.Replicas, st.FullyLabeledReplicas, st.ReadyReplicas, st.AvailableReplicas = int32(len(pods)), 0, 0, 0
	for _, p := range pods {
		if tmplSel.Matches(labels.Set(p.Labels)) {
			st.FullyLabeledReplicas++
		}
		if controller.IsPodReady(p) {
			st.ReadyReplicas++
			if controller.IsPodAvailable(p, rs.Spec.MinReadySeconds, now) {
				st.AvailableReplicas++
			}
		}
	}
	st.ObservedGeneration = rs.Generation
	diff := len(pods) - int(*rs.Spec.Replicas)
	switch {
	case manageErr != nil && diff != 0:
		reason := "FailedCreate"
		if diff > 0 {
			reason = "FailedDelete"
		}
		setFailureCondition(&st, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(now.UTC().Truncate(time.Second)),
			Reason:             reason, Message: fmt.Sprint(manageErr),
		})
	case manageErr == nil:
		removeFailureCondition(&st)
	}
	return st
}

func setFailureCondition(st *appsv1.ReplicaSetStatus, c appsv1.ReplicaSetCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			if st.Conditions[i].Status == c.Status && st.Conditions[i].Reason == c.Reason && st.Conditions[i].Message == c.Message {
				return
			}
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

func removeFailureCondition(st *appsv1.ReplicaSetStatus) {
	out := st.Conditions[:0]
	for _, c := range st.Conditions {
		if c.Type != appsv1.ReplicaSetReplicaFailure {
			out = append(out, c)
		}
	}
	st.Conditions = out
	if len(st.Conditions) == 0 {
		st.Conditions = nil
	}
}
