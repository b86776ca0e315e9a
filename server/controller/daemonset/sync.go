package daemonset

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

// defaultTolerations are the tolerations Kubernetes gives daemon pods.
var defaultTolerations = []corev1.Toleration{
	{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: corev1.TaintNodeDiskPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodeMemoryPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodePIDPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cached, err := c.dss.DaemonSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.exp.Delete(key)
		return nil
	}
	if err != nil {
		return err
	}
	ds := cached.DeepCopy()
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil
	}
	pods, err := c.claimPods(ctx, ds, sel)
	if err != nil {
		return err
	}
	revs := c.history.Revisions(ds)
	cur, err := c.history.Ensure(ctx, ds, dsGVK, ds.Spec.Template.Labels, &ds.Spec.Template, ds.Status.CollisionCount, revs)
	var coll *controller.CollisionError
	if errors.As(err, &coll) {
		n := int32(1)
		if ds.Status.CollisionCount != nil {
			n = *ds.Status.CollisionCount + 1
		}
		ds.Status.CollisionCount = &n
		_, uerr := c.cc.Client.AppsV1().DaemonSets(ns).UpdateStatus(ctx, ds, metav1.UpdateOptions{})
		if uerr != nil {
			return uerr
		}
		return err
	}
	if err != nil {
		return err
	}
	hash := cur.Labels[appsv1.ControllerRevisionHashLabelKey]
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	byNode := map[string][]*corev1.Pod{}
	for _, p := range pods {
		if p.Spec.NodeName != "" {
			byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
		}
	}
	now := c.cc.Now()
	var manageErr error
	if c.exp.Satisfied(key) && ds.DeletionTimestamp == nil {
		manageErr = c.manage(ctx, key, ds, hash, nodes, byNode, now)
	}
	if err := c.updateStatus(ctx, ds, hash, nodes, byNode, now); err != nil {
		return err
	}
	if manageErr != nil {
		return manageErr
	}
	live := map[string]bool{}
	for _, p := range pods {
		live[p.Labels[appsv1.ControllerRevisionHashLabelKey]] = true
	}
	limit := int32(10)
	if ds.Spec.RevisionHistoryLimit != nil {
		limit = *ds.Spec.RevisionHistoryLimit
	}
	return c.history.Truncate(ctx, c.history.Revisions(ds), limit, live, cur.Name)
}

func (c *Controller) claimPods(ctx context.Context, ds *appsv1.DaemonSet, sel labels.Selector) ([]*corev1.Pod, error) {
	return c.cc.ClaimPods(ctx, c.podInf, ds, dsGVK, sel, func(ctx context.Context) (metav1.Object, error) {
		return c.cc.Client.AppsV1().DaemonSets(ds.Namespace).Get(ctx, ds.Name, metav1.GetOptions{})
	}, nil)
}

// fits reports whether the daemon pod should run on node (shouldRun) and
// may keep running there (shouldContinue: no untolerated NoExecute taint).
func fits(ds *appsv1.DaemonSet, node *corev1.Node) (shouldRun, shouldContinue bool) {
	if !controller.NodeMatches(&ds.Spec.Template.Spec, node) {
		return false, false
	}
	tols := append(append([]corev1.Toleration(nil), ds.Spec.Template.Spec.Tolerations...), defaultTolerations...)
	if ds.Spec.Template.Spec.HostNetwork {
		tols = append(tols, corev1.Toleration{Key: corev1.TaintNodeNetworkUnavailable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
	}
	shouldRun, shouldContinue = true, true
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule || controller.Tolerates(tols, t) {
			continue
		}
		shouldRun = false
		if t.Effect == corev1.TaintEffectNoExecute {
			shouldContinue = false
		}
	}
	return shouldRun, shouldContinue
}

// manage creates missing daemon pods, deletes extra, failed and
// misplaced ones, and rolls updates.
func (c *Controller) manage(ctx context.Context, key string, ds *appsv1.DaemonSet, hash string, nodes []*corev1.Node, byNode map[string][]*corev1.Pod, now time.Time) error {
	var create []string
	var del []*corev1.Pod
	for _, n := range nodes {
		run, cont := fits(ds, n)
		var active []*corev1.Pod
		for _, p := range byNode[n.Name] {
			switch {
			case p.DeletionTimestamp != nil:
			case p.Status.Phase == corev1.PodFailed:
				del = append(del, p) // replaced below
			default:
				active = append(active, p)
			}
		}
		switch {
		case run && len(active) == 0:
			create = append(create, n.Name)
		case run && len(active) > 1:
			sort.Slice(active, func(i, j int) bool { return active[i].CreationTimestamp.Before(&active[j].CreationTimestamp) })
			// Keep one pod per node: the new one if any (maxSurge), else
			// the oldest; the rolling update deals with the surged pair.
			if !isSurge(ds) || len(active) > 2 {
				del = append(del, active[1:]...)
			}
		case !cont:
			del = append(del, active...)
		}
	}
	if len(create) == 0 && len(del) == 0 {
		return c.rollingUpdate(ctx, key, ds, hash, nodes, byNode, now)
	}
	keys := make([]string, len(del))
	for i, p := range del {
		keys[i] = p.Namespace + "/" + p.Name
	}
	c.exp.ExpectCreationsAndDeletions(key, len(create), keys)
	ref := controller.OwnerRef(ds, dsGVK)
	created, err := controller.CreatePods(ctx, c.cc.Client, ds.Namespace, len(create), func(i int) *corev1.Pod {
		return newPod(ds, &ref, hash, create[i])
	})
	for _, p := range created {
		c.recorder.Eventf(ds, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", p.Name)
	}
	if skipped := len(create) - len(created); skipped > 0 {
		c.exp.Lower(key, skipped, 0)
	}
	if err != nil && !controller.IsNamespaceTerminating(err) {
		c.recorder.Eventf(ds, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return err
	}
	return c.deletePods(ctx, key, ds, del)
}

// newPod is the daemon pod for node: bound to it, with the daemon
// tolerations and the revision's hash label.
func newPod(ds *appsv1.DaemonSet, ref *metav1.OwnerReference, hash, node string) *corev1.Pod {
	p := controller.PodFromTemplate(&ds.Spec.Template, ds, ref)
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Labels[appsv1.ControllerRevisionHashLabelKey] = hash
	p.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] = hash
	p.Spec.NodeName = node
	for _, t := range defaultTolerations {
		if !hasToleration(p.Spec.Tolerations, t) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, t)
		}
	}
	// The node affinity kube's DaemonSet controller sets, for schedulers
	// and readers; the pod is bound already.
	if p.Spec.Affinity == nil {
		p.Spec.Affinity = &corev1.Affinity{}
	}
	p.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{
			Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
		}}}},
	}}
	return p
}

func hasToleration(ts []corev1.Toleration, t corev1.Toleration) bool {
	for _, x := range ts {
		if x.Key == t.Key && x.Effect == t.Effect && x.Operator == t.Operator {
			return true
		}
	}
	return false
}

func (c *Controller) deletePods(ctx context.Context, key string, ds *appsv1.DaemonSet, pods []*corev1.Pod) error {
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func(i int, p *corev1.Pod) {
			defer wg.Done()
			err := c.cc.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
			if err != nil && !apierrors.IsNotFound(err) {
				c.exp.PodDeletionObserved(key, p.Namespace+"/"+p.Name)
				errs[i] = err
				return
			}
			c.recorder.Eventf(ds, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", p.Name)
		}(i, p)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func isSurge(ds *appsv1.DaemonSet) bool {
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	return ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType && ru != nil && ru.MaxSurge != nil &&
		!(ru.MaxSurge.Type == intstr.Int && ru.MaxSurge.IntVal == 0) && ru.MaxSurge.String() != "0%"
}

// updateStatus writes the counts of the status.
func (c *Controller) updateStatus(ctx context.Context, ds *appsv1.DaemonSet, hash string, nodes []*corev1.Node, byNode map[string][]*corev1.Pod, now time.Time) error {
	st := ds.Status.DeepCopy()
	st.DesiredNumberScheduled, st.CurrentNumberScheduled, st.NumberMisscheduled = 0, 0, 0
	st.NumberReady, st.UpdatedNumberScheduled, st.NumberAvailable, st.NumberUnavailable = 0, 0, 0, 0
	for _, n := range nodes {
		run, _ := fits(ds, n)
		var active []*corev1.Pod
		for _, p := range byNode[n.Name] {
			if p.DeletionTimestamp == nil && !controller.IsPodTerminal(p) {
				active = append(active, p)
			}
		}
		if !run {
			if len(active) > 0 {
				st.NumberMisscheduled++
			}
			continue
		}
		st.DesiredNumberScheduled++
		if len(active) == 0 {
			continue
		}
		st.CurrentNumberScheduled++
		ready, available, updated := false, false, false
		for _, p := range active {
			if controller.IsPodReady(p) {
				ready = true
				if controller.IsPodAvailable(p, ds.Spec.MinReadySeconds, now) {
					available = true
				}
			}
			if p.Labels[appsv1.ControllerRevisionHashLabelKey] == hash {
				updated = true
			}
		}
		if ready {
			st.NumberReady++
		}
		if available {
			st.NumberAvailable++
		}
		if updated {
			st.UpdatedNumberScheduled++
		}
	}
	st.NumberUnavailable = max(st.DesiredNumberScheduled-st.NumberAvailable, 0)
	st.ObservedGeneration = ds.Generation
	if apiequality.Semantic.DeepEqual(*st, ds.Status) {
		return nil
	}
	ds.Status = *st
	_, err := c.cc.Client.AppsV1().DaemonSets(ds.Namespace).UpdateStatus(ctx, ds, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil && ds.Spec.MinReadySeconds > 0 && st.NumberReady != st.NumberAvailable {
		c.queue.AddAfter(ds.Namespace+"/"+ds.Name, time.Duration(ds.Spec.MinReadySeconds)*time.Second)
	}
	return err
}
