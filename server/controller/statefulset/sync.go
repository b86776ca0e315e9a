package statefulset

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
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
	cached, err := c.sets.StatefulSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	set := cached.DeepCopy()
	sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil
	}
	pods, err := c.claimPods(ctx, set, sel)
	if err != nil {
		return err
	}
	revs := c.history.Revisions(set)
	updateRev, err := c.history.Ensure(ctx, set, stsGVK, set.Spec.Template.Labels, &set.Spec.Template, set.Status.CollisionCount, revs)
	var coll *controller.CollisionError
	if errors.As(err, &coll) {
		n := int32(1)
		if set.Status.CollisionCount != nil {
			n = *set.Status.CollisionCount + 1
		}
		set.Status.CollisionCount = &n
		if _, uerr := c.cc.Client.AppsV1().StatefulSets(ns).UpdateStatus(ctx, set, metav1.UpdateOptions{}); uerr != nil {
			return uerr
		}
		return err
	}
	if err != nil {
		return err
	}
	currentRev := updateRev
	for _, r := range c.history.Revisions(set) {
		if r.Name == set.Status.CurrentRevision {
			currentRev = r
		}
	}
	var manageErr error
	if set.DeletionTimestamp == nil {
		manageErr = c.manage(ctx, set, pods, currentRev, updateRev)
	}
	if err := c.updateStatus(ctx, set, currentRev, updateRev); err != nil {
		return err
	}
	if manageErr != nil {
		return manageErr
	}
	live := map[string]bool{}
	for _, p := range pods {
		live[p.Labels[appsv1.ControllerRevisionHashLabelKey]] = true
	}
	for _, r := range c.history.Revisions(set) {
		if live[r.Name] {
			live[r.Labels[appsv1.ControllerRevisionHashLabelKey]] = true
		}
	}
	limit := int32(10)
	if set.Spec.RevisionHistoryLimit != nil {
		limit = *set.Spec.RevisionHistoryLimit
	}
	return c.history.Truncate(ctx, c.history.Revisions(set), limit, live, currentRev.Name, updateRev.Name)
}

func (c *Controller) claimPods(ctx context.Context, set *appsv1.StatefulSet, sel labels.Selector) ([]*corev1.Pod, error) {
	return c.cc.ClaimPods(ctx, c.podInf, set, stsGVK, sel, func(ctx context.Context) (metav1.Object, error) {
		return c.cc.Client.AppsV1().StatefulSets(set.Namespace).Get(ctx, set.Name, metav1.GetOptions{})
	}, nil)
}

// ordinalOf parses <set>-<ordinal>.
func ordinalOf(set *appsv1.StatefulSet, p *corev1.Pod) (int, bool) {
	rest, ok := strings.CutPrefix(p.Name, set.Name+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

func start(set *appsv1.StatefulSet) int {
	if set.Spec.Ordinals != nil {
		return int(set.Spec.Ordinals.Start)
	}
	return 0
}

func replicas(set *appsv1.StatefulSet) int {
	if set.Spec.Replicas == nil {
		return 1
	}
	return int(*set.Spec.Replicas)
}

func runningAndReady(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && controller.IsPodReady(p)
}

// manage creates, deletes and updates pods, in ordinal order when
// OrderedReady (returning at the first step that must wait).
func (c *Controller) manage(ctx context.Context, set *appsv1.StatefulSet, pods []*corev1.Pod, currentRev, updateRev *appsv1.ControllerRevision) error {
	first, n := start(set), replicas(set)
	byOrd := map[int]*corev1.Pod{}
	var condemned []*corev1.Pod
	for _, p := range pods {
		ord, ok := ordinalOf(set, p)
		if !ok {
			continue
		}
		if ord >= first && ord < first+n {
			byOrd[ord] = p
		} else {
			condemned = append(condemned, p)
		}
	}
	sort.Slice(condemned, func(i, j int) bool {
		a, _ := ordinalOf(set, condemned[i])
		b, _ := ordinalOf(set, condemned[j])
		return a > b
	})
	monotonic := set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	rolling := set.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType
	partition := 0
	if ru := set.Spec.UpdateStrategy.RollingUpdate; rolling && ru != nil && ru.Partition != nil {
		partition = int(*ru.Partition)
	}
	now := c.cc.Now()
	healthy := func(p *corev1.Pod) bool {
		return runningAndReady(p) && p.DeletionTimestamp == nil && controller.IsPodAvailable(p, set.Spec.MinReadySeconds, now)
	}
	waitAvailable := func(p *corev1.Pod) {
		if d := controller.AvailableIn(p, set.Spec.MinReadySeconds, now); d > 0 {
			c.queue.AddAfter(set.Namespace+"/"+set.Name, d+100*time.Millisecond)
		}
	}
	for ord := first; ord < first+n; ord++ {
		p := byOrd[ord]
		if p != nil && controller.IsPodTerminal(p) && p.DeletionTimestamp == nil {
			if err := c.deletePod(ctx, set, p); err != nil {
				return err
			}
			if monotonic {
				return nil
			}
			continue
		}
		if p == nil {
			rev := updateRev
			if rolling && ord < partition {
				rev = currentRev
			}
			if err := c.createPod(ctx, set, rev, ord); err != nil {
				return err
			}
			if monotonic {
				return nil
			}
			continue
		}
		if p.DeletionTimestamp != nil || !healthy(p) {
			waitAvailable(p)
			if monotonic {
				return nil
			}
		}
	}
	// OrderedReady scales down one pod at a time, from the highest
	// ordinal, and only while every pod below is healthy: an unhealthy
	// condemned pod is deleted only when it is the first unhealthy pod (as
	// Kubernetes; a scale-down halts on a broken pod).
	var firstUnhealthy *corev1.Pod
	for ord := first; ord < first+n && firstUnhealthy == nil; ord++ {
		if q := byOrd[ord]; q != nil && !healthy(q) {
			firstUnhealthy = q
		}
	}
	for i := len(condemned) - 1; i >= 0 && firstUnhealthy == nil; i-- {
		if !healthy(condemned[i]) {
			firstUnhealthy = condemned[i]
		}
	}
	for _, p := range condemned {
		if p.DeletionTimestamp != nil {
			if monotonic {
				return nil
			}
			continue
		}
		if monotonic {
			for ord := first; ord < first+n; ord++ {
				if q := byOrd[ord]; q == nil || !healthy(q) {
					return nil
				}
			}
			if !healthy(p) && p != firstUnhealthy {
				waitAvailable(p)
				return nil
			}
		}
		if err := c.deleteScaledClaims(ctx, set, p); err != nil {
			return err
		}
		if err := c.deletePod(ctx, set, p); err != nil {
			return err
		}
		if monotonic {
			return nil
		}
	}
	if !rolling {
		return nil
	}
	for ord := first + n - 1; ord >= first+partition; ord-- {
		p := byOrd[ord]
		if p == nil {
			return nil
		}
		if p.Labels[appsv1.ControllerRevisionHashLabelKey] != updateRev.Name && p.DeletionTimestamp == nil {
			return c.deletePod(ctx, set, p)
		}
		if !healthy(p) {
			waitAvailable(p)
			return nil
		}
	}
	return nil
}

// createPod creates the pod of ordinal ord from a revision's template.
func (c *Controller) createPod(ctx context.Context, set *appsv1.StatefulSet, rev *appsv1.ControllerRevision, ord int) error {
	tmpl, err := controller.TemplateOf(rev)
	if err != nil {
		return fmt.Errorf("revision %s: %w", rev.Name, err)
	}
	ref := controller.OwnerRef(set, stsGVK)
	p := controller.PodFromTemplate(tmpl, set, &ref)
	p.GenerateName = ""
	p.Name = fmt.Sprintf("%s-%d", set.Name, ord)
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Labels[appsv1.ControllerRevisionHashLabelKey] = rev.Name
	p.Labels[podNameLabel] = p.Name
	p.Labels[podIndexLabel] = strconv.Itoa(ord)
	p.Spec.Hostname = p.Name
	p.Spec.Subdomain = set.Spec.ServiceName
	if err := c.ensureClaims(ctx, set, p, ord); err != nil {
		return err
	}
	_, err = c.cc.Client.CoreV1().Pods(set.Namespace).Create(ctx, p, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		return nil // the cache lags behind
	case err != nil:
		if controller.IsNamespaceTerminating(err) {
			return nil
		}
		c.recorder.Eventf(set, corev1.EventTypeWarning, "FailedCreate", "create Pod %s in StatefulSet %s failed error: %v", p.Name, set.Name, err)
		return err
	}
	c.recorder.Eventf(set, corev1.EventTypeNormal, "SuccessfulCreate", "create Pod %s in StatefulSet %s successful", p.Name, set.Name)
	return nil
}

func (c *Controller) deletePod(ctx context.Context, set *appsv1.StatefulSet, p *corev1.Pod) error {
	err := c.cc.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		c.recorder.Eventf(set, corev1.EventTypeWarning, "FailedDelete", "delete Pod %s in StatefulSet %s failed error: %v", p.Name, set.Name, err)
		return err
	}
	c.recorder.Eventf(set, corev1.EventTypeNormal, "SuccessfulDelete", "delete Pod %s in StatefulSet %s successful", p.Name, set.Name)
	return nil
}

// updateStatus counts the pods (from the cache, which now includes what
// this sync did only once the events arrive: the next sync corrects it).
func (c *Controller) updateStatus(ctx context.Context, set *appsv1.StatefulSet, currentRev, updateRev *appsv1.ControllerRevision) error {
	sel, _ := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	pods, err := c.pods.Pods(set.Namespace).List(sel)
	if err != nil {
		return err
	}
	now := c.cc.Now()
	st := set.Status.DeepCopy()
	st.ObservedGeneration = set.Generation
	st.Replicas, st.ReadyReplicas, st.AvailableReplicas, st.CurrentReplicas, st.UpdatedReplicas = 0, 0, 0, 0, 0
	for _, p := range pods {
		if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != set.UID {
			continue
		}
		if _, ok := ordinalOf(set, p); !ok || p.DeletionTimestamp != nil {
			continue
		}
		st.Replicas++
		if runningAndReady(p) {
			st.ReadyReplicas++
			if controller.IsPodAvailable(p, set.Spec.MinReadySeconds, now) {
				st.AvailableReplicas++
			}
		}
		switch p.Labels[appsv1.ControllerRevisionHashLabelKey] {
		case currentRev.Name:
			st.CurrentReplicas++
		}
		if p.Labels[appsv1.ControllerRevisionHashLabelKey] == updateRev.Name {
			st.UpdatedReplicas++
		}
	}
	st.CurrentRevision, st.UpdateRevision = currentRev.Name, updateRev.Name
	// The update is complete once every pod is updated and ready.
	if currentRev.Name != updateRev.Name && st.UpdatedReplicas == st.Replicas && st.ReadyReplicas == st.Replicas &&
		int(st.Replicas) == replicas(set) {
		st.CurrentRevision, st.CurrentReplicas = updateRev.Name, st.UpdatedReplicas
	}
	if apiequality.Semantic.DeepEqual(*st, set.Status) {
		return nil
	}
	set.Status = *st
	_, err = c.cc.Client.AppsV1().StatefulSets(set.Namespace).UpdateStatus(ctx, set, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
