// Package disruption is the disruption controller: it computes each
// PodDisruptionBudget's status — expected and currently healthy pods, the
// desired healthy count from minAvailable or maxUnavailable (scaled by the
// pods' controllers' replicas), disruptionsAllowed and the
// DisruptionAllowed condition — which the eviction subresource obeys. It
// forgets status.disruptedPods entries once the pod is gone or after two
// minutes.
package disruption

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "disruption-controller"

// DeletionTimeout is how long an eviction's entry in disruptedPods holds
// a pod out of the healthy count while its deletion is pending.
const DeletionTimeout = 2 * time.Minute

// Controller computes PDB status.
type Controller struct {
	cc       *controller.Context
	pdbs     policylisters.PodDisruptionBudgetLister
	pods     corelisters.PodLister
	rcs      corelisters.ReplicationControllerLister
	rss      appslisters.ReplicaSetLister
	deps     appslisters.DeploymentLister
	stss     appslisters.StatefulSetLister
	infs     []cache.SharedIndexInformer
	queue    controller.Queue
	recorder record.EventRecorder
	log      *slog.Logger
}

// New returns the controller.
func New(cc *controller.Context) *Controller {
	f := cc.Informers
	c := &Controller{
		cc:   cc,
		pdbs: f.Policy().V1().PodDisruptionBudgets().Lister(),
		pods: f.Core().V1().Pods().Lister(),
		rcs:  f.Core().V1().ReplicationControllers().Lister(),
		rss:  f.Apps().V1().ReplicaSets().Lister(),
		deps: f.Apps().V1().Deployments().Lister(),
		stss: f.Apps().V1().StatefulSets().Lister(),
		infs: []cache.SharedIndexInformer{f.Policy().V1().PodDisruptionBudgets().Informer(), f.Core().V1().Pods().Informer(),
			f.Core().V1().ReplicationControllers().Informer(), f.Apps().V1().ReplicaSets().Informer(),
			f.Apps().V1().Deployments().Informer(), f.Apps().V1().StatefulSets().Informer()},
		queue:    controller.NewQueue(component, 0),
		recorder: cc.Recorder(component),
		log:      cc.Log(component),
	}
	controller.AddHandler(c.infs[0], controller.Handler(c.queue), c.log)
	onPod := func(obj any) {
		p, ok := controller.Unwrap[*corev1.Pod](obj)
		if !ok {
			return
		}
		pdbs, _ := c.pdbs.PodDisruptionBudgets(p.Namespace).List(labels.Everything())
		for _, pdb := range pdbs {
			if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err == nil && sel.Matches(labels.Set(p.Labels)) {
				c.queue.Add(pdb.Namespace + "/" + pdb.Name)
			}
		}
	}
	controller.AddHandler(c.infs[1], cache.ResourceEventHandlerFuncs{AddFunc: onPod, UpdateFunc: func(_, obj any) { onPod(obj) }, DeleteFunc: onPod}, c.log)
	return c
}

// Run runs workers until ctx ends; every PDB is recomputed every 30 s (its
// pods' controllers may have been scaled).
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.infs...) {
		return
	}
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				all, _ := c.pdbs.List(labels.Everything())
				for _, p := range all {
					c.queue.Add(p.Namespace + "/" + p.Name)
				}
			}
		}
	}()
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pdb, err := c.pdbs.PodDisruptionBudgets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	now := c.cc.Now()
	pods, err := c.podsOf(pdb)
	if err != nil {
		return c.failed(ctx, pdb, err)
	}
	expected, desired, err := c.desiredHealthy(pdb, pods)
	if err != nil {
		c.recorder.Eventf(pdb, corev1.EventTypeWarning, "CalculateExpectedPodCountFailed", "Failed to calculate the number of expected pods: %v", err)
		return c.failed(ctx, pdb, err)
	}
	disrupted, next := c.disruptedPods(pdb, pods, now)
	healthy := int32(0)
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		if _, ok := disrupted[p.Name]; ok {
			continue
		}
		if controller.IsPodReady(p) {
			healthy++
		}
	}
	st := policyv1.PodDisruptionBudgetStatus{
		ObservedGeneration: pdb.Generation,
		DisruptedPods:      disrupted,
		DisruptionsAllowed: max(healthy-desired, 0),
		CurrentHealthy:     healthy,
		DesiredHealthy:     desired,
		ExpectedPods:       expected,
		Conditions:         append([]metav1.Condition(nil), pdb.Status.Conditions...),
	}
	cond := metav1.Condition{Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionTrue, Reason: policyv1.SufficientPodsReason,
		ObservedGeneration: pdb.Generation, LastTransitionTime: controller.Now(c.cc.Now)}
	if st.DisruptionsAllowed == 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, policyv1.InsufficientPodsReason
	}
	setCondition(&st.Conditions, cond)
	if next > 0 {
		c.queue.AddAfter(key, next)
	}
	return c.write(ctx, pdb, st)
}

// failed records that the budget could not be computed: no disruption
// is allowed.
func (c *Controller) failed(ctx context.Context, pdb *policyv1.PodDisruptionBudget, cause error) error {
	st := *pdb.Status.DeepCopy()
	st.DisruptionsAllowed = 0
	setCondition(&st.Conditions, metav1.Condition{Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionFalse,
		Reason: policyv1.SyncFailedReason, Message: cause.Error(), ObservedGeneration: pdb.Generation, LastTransitionTime: controller.Now(c.cc.Now)})
	if err := c.write(ctx, pdb, st); err != nil {
		return err
	}
	return cause
}

func (c *Controller) write(ctx context.Context, pdb *policyv1.PodDisruptionBudget, st policyv1.PodDisruptionBudgetStatus) error {
	if apiequality.Semantic.DeepEqual(pdb.Status, st) {
		return nil
	}
	cp := pdb.DeepCopy()
	cp.Status = st
	_, err := c.cc.Client.PolicyV1().PodDisruptionBudgets(pdb.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func setCondition(conds *[]metav1.Condition, c metav1.Condition) {
	for i := range *conds {
		cur := &(*conds)[i]
		if cur.Type != c.Type {
			continue
		}
		if cur.Status == c.Status {
			c.LastTransitionTime = cur.LastTransitionTime
		}
		*cur = c
		return
	}
	*conds = append(*conds, c)
}

// podsOf lists the pods the budget selects (policy/v1: an empty selector
// selects every pod of the namespace, a nil one none).
func (c *Controller) podsOf(pdb *policyv1.PodDisruptionBudget) ([]*corev1.Pod, error) {
	if pdb.Spec.Selector == nil {
		return nil, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		return nil, err
	}
	return c.pods.Pods(pdb.Namespace).List(sel)
}

// desiredHealthy returns the expected pod count and how many must stay
// healthy.
func (c *Controller) desiredHealthy(pdb *policyv1.PodDisruptionBudget, pods []*corev1.Pod) (int32, int32, error) {
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		expected, err := c.expectedScale(pods)
		if err != nil {
			return 0, 0, err
		}
		u, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, int(expected), true)
		if err != nil {
			return 0, 0, err
		}
		return expected, max(expected-int32(u), 0), nil
	case pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.Type == intstr.Int:
		return int32(len(pods)), pdb.Spec.MinAvailable.IntVal, nil
	case pdb.Spec.MinAvailable != nil:
		expected, err := c.expectedScale(pods)
		if err != nil {
			return 0, 0, err
		}
		m, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, int(expected), true)
		if err != nil {
			return 0, 0, err
		}
		return expected, int32(m), nil
	}
	return int32(len(pods)), 0, nil
}

// expectedScale sums the replicas of the pods' controllers
// (ReplicationController, Deployment through its ReplicaSet, ReplicaSet,
// StatefulSet).
func (c *Controller) expectedScale(pods []*corev1.Pod) (int32, error) {
	seen := map[types.UID]bool{}
	var total int32
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil {
			return 0, fmt.Errorf("found no controller ref for pod %q", p.Name)
		}
		uid, n, err := c.scaleOf(p.Namespace, ref)
		if err != nil {
			return 0, err
		}
		if !seen[uid] {
			seen[uid] = true
			total += n
		}
	}
	return total, nil
}

func (c *Controller) scaleOf(ns string, ref *metav1.OwnerReference) (types.UID, int32, error) {
	missing := fmt.Errorf("found no controllers for pod owned by %s %q", ref.Kind, ref.Name)
	switch ref.Kind {
	case "ReplicationController":
		rc, err := c.rcs.ReplicationControllers(ns).Get(ref.Name)
		if err != nil || rc.UID != ref.UID {
			return "", 0, missing
		}
		return rc.UID, deref(rc.Spec.Replicas), nil
	case "ReplicaSet":
		rs, err := c.rss.ReplicaSets(ns).Get(ref.Name)
		if err != nil || rs.UID != ref.UID {
			return "", 0, missing
		}
		if dref := metav1.GetControllerOf(rs); dref != nil && dref.Kind == "Deployment" {
			if d, err := c.deps.Deployments(ns).Get(dref.Name); err == nil && d.UID == dref.UID {
				return d.UID, deref(d.Spec.Replicas), nil
			}
		}
		return rs.UID, deref(rs.Spec.Replicas), nil
	case "StatefulSet":
		sts, err := c.stss.StatefulSets(ns).Get(ref.Name)
		if err != nil || sts.UID != ref.UID {
			return "", 0, missing
		}
		return sts.UID, deref(sts.Spec.Replicas), nil
	}
	return "", 0, missing
}

func deref(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// disruptedPods keeps the entries of pods still there and not yet
// deleted, for at most DeletionTimeout; it returns when the next expires.
func (c *Controller) disruptedPods(pdb *policyv1.PodDisruptionBudget, pods []*corev1.Pod, now time.Time) (map[string]metav1.Time, time.Duration) {
	if len(pdb.Status.DisruptedPods) == 0 {
		return nil, 0
	}
	byName := map[string]*corev1.Pod{}
	for _, p := range pods {
		byName[p.Name] = p
	}
	out := map[string]metav1.Time{}
	next := time.Duration(math.MaxInt64)
	for name, at := range pdb.Status.DisruptedPods {
		p, ok := byName[name]
		if !ok || p.DeletionTimestamp != nil {
			continue
		}
		left := at.Add(DeletionTimeout).Sub(now)
		if left <= 0 {
			c.recorder.Eventf(pdb, corev1.EventTypeWarning, "NotDeleted", "Pod was expected by PDB %s/%s to be deleted but it wasn't", pdb.Namespace, pdb.Name)
			continue
		}
		out[name] = at
		next = min(next, left)
	}
	if len(out) == 0 {
		return nil, 0
	}
	return out, next
}
