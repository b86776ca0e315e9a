package admission

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/quota"
)

// quota refuses a create that would exceed a quota of its namespace, and
// otherwise returns the charges: one status update per matching quota,
// conditional on the quota's resourceVersion.
func (c *Chain) quota(snap *state.Snapshot, a *Attributes) ([]fsm.Mutation, error) {
	qkind, ok := c.reg.Lookup("", "v1", "resourcequotas")
	if !ok {
		return nil, nil
	}
	type stored struct {
		o *state.Object
		q *corev1.ResourceQuota
	}
	var quotas []stored
	snap.List(qkind.StorageResource(), a.Namespace, "", func(o *state.Object) bool {
		obj, err := qkind.Decode(o)
		if err != nil {
			c.log.Error("undecodable resource quota", "key", o.Key, "err", err)
			return true
		}
		quotas = append(quotas, stored{o, obj.(*corev1.ResourceQuota)})
		return true
	})
	if len(quotas) == 0 {
		return nil, nil
	}
	sort.Slice(quotas, func(i, j int) bool { return quotas[i].q.Name < quotas[j].q.Name })
	usage := quota.Usage(a.Kind.GroupResource(), a.Object)
	var muts []fsm.Mutation
	for _, s := range quotas {
		q := s.q
		hard := q.Spec.Hard
		if !quota.Tracked(hard, usage) || !quota.Matches(q, a.Object) {
			continue
		}
		if p, ok := a.Object.(*corev1.Pod); ok {
			if missing := quota.MissingConstraints(p, hard); len(missing) > 0 {
				return nil, apierrors.NewForbidden(a.Kind.GroupResource(), a.Name,
					fmt.Errorf("failed quota: %s: must specify %s", q.Name, strings.Join(missing, ",")))
			}
		}
		used := q.Status.Used
		if !covers(used, hard) {
			// New quota (or new names) not yet counted by the controller:
			// count now.
			used = c.computeUsage(snap, q)
		}
		names := quota.Names(hard)
		zeroFill(used, names)
		requested := quota.Mask(usage, names)
		newUsed := quota.Add(used, requested)
		if exceeded := quota.Exceeded(quota.Mask(newUsed, quota.Names(requested)), hard); len(exceeded) > 0 {
			return nil, apierrors.NewForbidden(a.Kind.GroupResource(), a.Name, fmt.Errorf(
				"exceeded quota: %s, requested: %s, used: %s, limited: %s", q.Name,
				quota.PrettyPrint(quota.Mask(requested, exceeded)),
				quota.PrettyPrint(quota.Mask(used, exceeded)),
				quota.PrettyPrint(quota.Mask(hard, exceeded))))
		}
		st := corev1.ResourceQuotaStatus{Hard: hard.DeepCopy(), Used: quota.Mask(newUsed, names)}
		data, err := json.Marshal(st)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		muts = append(muts, fsm.Mutation{Op: fsm.OpUpdateStatus, Key: s.o.Key, Object: data,
			Preconditions: &fsm.Preconditions{UID: s.o.UID, ResourceVersion: s.o.ModifyIndex}})
	}
	if a.DryRun {
		return nil, nil
	}
	return muts, nil
}

// covers reports whether used has every name of hard.
func covers(used, hard corev1.ResourceList) bool {
	for n := range hard {
		if _, ok := used[n]; !ok {
			return false
		}
	}
	return true
}

func zeroFill(l corev1.ResourceList, names []corev1.ResourceName) {
	for _, n := range names {
		if _, ok := l[n]; !ok {
			l[n] = resource.MustParse("0")
		}
	}
}

// computeUsage counts what the namespace's objects use against q.
func (c *Chain) computeUsage(snap *state.Snapshot, q *corev1.ResourceQuota) corev1.ResourceList {
	used := corev1.ResourceList{}
	names := quota.Names(q.Spec.Hard)
	snap.InNamespace(q.Namespace, func(o *state.Object) bool {
		kind, ok := c.reg.ByStorageResource(o.Key.Resource)
		if !ok {
			return true
		}
		gr := kind.GroupResource()
		if !relevant(q.Spec.Hard, gr) {
			return true
		}
		obj, err := kind.Decode(o)
		if err != nil {
			return true
		}
		if quota.Matches(q, obj) {
			used = quota.Add(used, quota.Mask(quota.Usage(gr, obj), names))
		}
		return true
	})
	zeroFill(used, names)
	return used
}

// relevant reports whether objects of gr can count against hard.
func relevant(hard corev1.ResourceList, gr schema.GroupResource) bool {
	if gr.Group == "" && (gr.Resource == "pods" || gr.Resource == "services") {
		return true
	}
	_, ok := hard[quota.CountName(gr)]
	if n, legacy := quota.LegacyCountName(gr); legacy {
		_, ok2 := hard[n]
		ok = ok || ok2
	}
	return ok
}
