package admission

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/quota"
)

// limitRangeAnnotation records what LimitRanger set, as Kubernetes does.
const limitRangeAnnotation = "kubernetes.io/limit-ranger"

// limitRanges returns the LimitRanges of a namespace.
func (c *Chain) limitRanges(snap *state.Snapshot, ns string) []*corev1.LimitRange {
	kind, ok := c.reg.Lookup("", "v1", "limitranges")
	if !ok {
		return nil
	}
	var out []*corev1.LimitRange
	snap.List(kind.StorageResource(), ns, "", func(o *state.Object) bool {
		obj, err := kind.Decode(o)
		if err != nil {
			c.log.Error("undecodable limit range", "key", o.Key, "err", err)
			return true
		}
		out = append(out, obj.(*corev1.LimitRange))
		return true
	})
	return out
}

// containerDefaults are a LimitRange's effective container defaults: a
// missing default limit is the max, a missing default request the default
// limit, else the min (Kubernetes' LimitRange defaulting, which the
// registry applies to stored LimitRanges too).
func containerDefaults(item corev1.LimitRangeItem) (limits, requests corev1.ResourceList) {
	limits, requests = corev1.ResourceList{}, corev1.ResourceList{}
	for k, v := range item.Max {
		limits[k] = v
	}
	for k, v := range item.Default {
		limits[k] = v
	}
	for k, v := range limits {
		requests[k] = v
	}
	for k, v := range item.DefaultRequest {
		requests[k] = v
	}
	for k, v := range item.Min {
		if _, ok := requests[k]; !ok {
			requests[k] = v
		}
	}
	return limits, requests
}

// limitRanger fills containers' missing requests and limits from the
// namespace's LimitRanges.
func (c *Chain) limitRanger(snap *state.Snapshot, a *Attributes) error {
	p := a.Object.(*corev1.Pod)
	var set []string
	for _, lr := range c.limitRanges(snap, a.Namespace) {
		for _, item := range lr.Spec.Limits {
			if item.Type != corev1.LimitTypeContainer {
				continue
			}
			limits, requests := containerDefaults(item)
			apply := func(cs []corev1.Container) {
				for i := range cs {
					ctr := &cs[i]
					var setReq, setLim []string
					for _, r := range quota.Names(limits) {
						if _, ok := ctr.Resources.Limits[r]; !ok {
							if ctr.Resources.Limits == nil {
								ctr.Resources.Limits = corev1.ResourceList{}
							}
							ctr.Resources.Limits[r] = limits[r].DeepCopy()
							setLim = append(setLim, string(r))
						}
					}
					for _, r := range quota.Names(requests) {
						if _, ok := ctr.Resources.Requests[r]; !ok {
							if ctr.Resources.Requests == nil {
								ctr.Resources.Requests = corev1.ResourceList{}
							}
							ctr.Resources.Requests[r] = requests[r].DeepCopy()
							setReq = append(setReq, string(r))
						}
					}
					if len(setReq) > 0 {
						set = append(set, fmt.Sprintf("%s request for container %s", strings.Join(setReq, ", "), ctr.Name))
					}
					if len(setLim) > 0 {
						set = append(set, fmt.Sprintf("%s limit for container %s", strings.Join(setLim, ", "), ctr.Name))
					}
				}
			}
			apply(p.Spec.InitContainers)
			apply(p.Spec.Containers)
		}
	}
	if len(set) > 0 {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[limitRangeAnnotation] = "LimitRanger plugin set: " + strings.Join(set, "; ")
	}
	return nil
}

// validateLimits checks a pod against the min, max and
// maxLimitRequestRatio of the namespace's LimitRanges.
func (c *Chain) validateLimits(snap *state.Snapshot, a *Attributes) error {
	p := a.Object.(*corev1.Pod)
	var errs []error
	for _, lr := range c.limitRanges(snap, a.Namespace) {
		for _, item := range lr.Spec.Limits {
			switch item.Type {
			case corev1.LimitTypeContainer:
				for _, ctr := range append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...) {
					errs = append(errs, checkItem(item, string(corev1.LimitTypeContainer), ctr.Resources.Requests, ctr.Resources.Limits)...)
				}
			case corev1.LimitTypePod:
				req, lim := quota.PodRequestsAndLimits(p)
				errs = append(errs, checkItem(item, string(corev1.LimitTypePod), req, lim)...)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewForbidden(a.Kind.GroupResource(), a.Name, utilerrors.NewAggregate(errs))
}

// checkItem applies one LimitRange item's constraints, with Kubernetes'
// messages.
func checkItem(item corev1.LimitRangeItem, typ string, req, lim corev1.ResourceList) []error {
	var errs []error
	names := func(l corev1.ResourceList) []corev1.ResourceName {
		n := quota.Names(l)
		sort.Slice(n, func(i, j int) bool { return n[i] < n[j] })
		return n
	}
	for _, r := range names(item.Min) {
		min := item.Min[r]
		rq, hasReq := req[r]
		lq, hasLim := lim[r]
		switch {
		case !hasReq:
			errs = append(errs, fmt.Errorf("minimum %s usage per %s is %s.  No request is specified", r, typ, min.String()))
		case rq.Cmp(min) < 0:
			errs = append(errs, fmt.Errorf("minimum %s usage per %s is %s, but request is %s", r, typ, min.String(), rq.String()))
		}
		if hasLim && lq.Cmp(min) < 0 {
			errs = append(errs, fmt.Errorf("minimum %s usage per %s is %s, but limit is %s", r, typ, min.String(), lq.String()))
		}
	}
	for _, r := range names(item.Max) {
		max := item.Max[r]
		rq, hasReq := req[r]
		lq, hasLim := lim[r]
		switch {
		case !hasLim:
			errs = append(errs, fmt.Errorf("maximum %s usage per %s is %s.  No limit is specified", r, typ, max.String()))
		case lq.Cmp(max) > 0:
			errs = append(errs, fmt.Errorf("maximum %s usage per %s is %s, but limit is %s", r, typ, max.String(), lq.String()))
		}
		if hasReq && rq.Cmp(max) > 0 {
			errs = append(errs, fmt.Errorf("maximum %s usage per %s is %s, but request is %s", r, typ, max.String(), rq.String()))
		}
	}
	for _, r := range names(item.MaxLimitRequestRatio) {
		ratio := item.MaxLimitRequestRatio[r]
		rq, hasReq := req[r]
		lq, hasLim := lim[r]
		if !hasLim {
			continue
		}
		if !hasReq || rq.IsZero() {
			errs = append(errs, fmt.Errorf("%s max limit to request ratio per %s is %s, but no request is specified or request is 0", r, typ, ratio.String()))
			continue
		}
		got := float64(lq.MilliValue()) / float64(rq.MilliValue())
		if got > float64(ratio.MilliValue())/1000 {
			errs = append(errs, fmt.Errorf("%s max limit to request ratio per %s is %s, but provided ratio is %f", r, typ, ratio.String(), got))
		}
	}
	return errs
}
