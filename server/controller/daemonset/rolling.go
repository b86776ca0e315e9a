package daemonset

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/server/controller"
)

// rollingUpdate replaces old daemon pods: without surge, deletes old pods
// (unavailable ones first, always) while at most maxUnavailable nodes lack
// an available pod, the new pod being created on the next sync; with
// surge, creates new pods next to old available ones on up to maxSurge
// nodes and deletes each old pod once its new one is available.
func (c *Controller) rollingUpdate(ctx context.Context, key string, ds *appsv1.DaemonSet, hash string, nodes []*corev1.Node, byNode map[string][]*corev1.Pod, now time.Time) error {
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType {
		return nil
	}
	var desired int
	type nodePods struct {
		name     string
		old, new *corev1.Pod
	}
	var list []nodePods
	for _, n := range nodes {
		if run, _ := fits(ds, n); !run {
			continue
		}
		desired++
		np := nodePods{name: n.Name}
		for _, p := range byNode[n.Name] {
			if p.DeletionTimestamp != nil || controller.IsPodTerminal(p) {
				continue
			}
			if p.Labels[appsv1.ControllerRevisionHashLabelKey] == hash {
				np.new = p
			} else if np.old == nil {
				np.old = p
			}
		}
		list = append(list, np)
	}
	maxUnavail, maxSurge := budgets(ds, desired)
	available := func(p *corev1.Pod) bool {
		return p != nil && controller.IsPodAvailable(p, ds.Spec.MinReadySeconds, now)
	}
	var del []*corev1.Pod
	if maxSurge == 0 {
		unavailable := 0
		for _, np := range list {
			if !available(np.new) && !available(np.old) {
				unavailable++
			}
		}
		for _, np := range list {
			if np.old == nil || np.new != nil {
				continue
			}
			if !available(np.old) {
				del = append(del, np.old) // not serving anyway
				continue
			}
			if unavailable < maxUnavail {
				del = append(del, np.old)
				unavailable++
			}
		}
		return c.deletePods(ctx, key, ds, del)
	}
	var surgeNodes []string
	surging := 0
	for _, np := range list {
		if np.old != nil && np.new != nil && !available(np.new) {
			surging++
		}
	}
	for _, np := range list {
		switch {
		case np.old == nil:
		case np.new != nil && available(np.new):
			del = append(del, np.old)
		case np.new == nil && !available(np.old):
			del = append(del, np.old) // replaced at once
		case np.new == nil && surging < maxSurge:
			surgeNodes = append(surgeNodes, np.name)
			surging++
		}
	}
	if len(surgeNodes) > 0 {
		c.exp.ExpectCreationsAndDeletions(key, len(surgeNodes), nil)
		ref := controller.OwnerRef(ds, dsGVK)
		created, err := controller.CreatePods(ctx, c.cc.Client, ds.Namespace, len(surgeNodes), func(i int) *corev1.Pod {
			return newPod(ds, &ref, hash, surgeNodes[i])
		})
		if skipped := len(surgeNodes) - len(created); skipped > 0 {
			c.exp.Lower(key, skipped, 0)
		}
		if err != nil {
			return err
		}
	}
	return c.deletePods(ctx, key, ds, del)
}

// budgets resolves maxUnavailable (default 1) and maxSurge (default 0)
// for desired nodes; both 0 means 1 unavailable.
func budgets(ds *appsv1.DaemonSet, desired int) (int, int) {
	u, s := intstr.FromInt32(1), intstr.FromInt32(0)
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		if ru.MaxUnavailable != nil {
			u = *ru.MaxUnavailable
		}
		if ru.MaxSurge != nil {
			s = *ru.MaxSurge
		}
	}
	mu, err := intstr.GetScaledValueFromIntOrPercent(&u, desired, true)
	if err != nil {
		mu = 1
	}
	ms, err := intstr.GetScaledValueFromIntOrPercent(&s, desired, true)
	if err != nil {
		ms = 0
	}
	if mu == 0 && ms == 0 {
		mu = 1
	}
	return mu, ms
}
