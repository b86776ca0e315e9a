// Package quota computes what objects use against a ResourceQuota, as
// Kubernetes' quota evaluators do: object counts (count/<resource>[.<group>]
// and the legacy names pods, services, configmaps, secrets...), a pod's
// compute requests and limits, a service's node ports and load balancers,
// and the quota scopes. The quota admission plugin and the resource quota
// controller share it.
package quota

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
)

// legacyCounts are the object-count names of the core kinds.
var legacyCounts = map[string]corev1.ResourceName{
	"pods":                   corev1.ResourcePods,
	"services":               corev1.ResourceServices,
	"configmaps":             corev1.ResourceConfigMaps,
	"secrets":                corev1.ResourceSecrets,
	"replicationcontrollers": corev1.ResourceReplicationControllers,
	"resourcequotas":         corev1.ResourceQuotas,
	"persistentvolumeclaims": corev1.ResourcePersistentVolumeClaims,
}

// CountName is the object-count resource name of gr.
func CountName(gr schema.GroupResource) corev1.ResourceName {
	if gr.Group == "" {
		return corev1.ResourceName("count/" + gr.Resource)
	}
	return corev1.ResourceName("count/" + gr.Resource + "." + gr.Group)
}

// LegacyCountName is the pre-count/ name of gr's object count, if any
// ("pods", "services"...).
func LegacyCountName(gr schema.GroupResource) (corev1.ResourceName, bool) {
	if gr.Group != "" {
		return "", false
	}
	n, ok := legacyCounts[gr.Resource]
	return n, ok
}

// Usage returns what obj (of resource gr) uses. A finished pod uses
// nothing.
func Usage(gr schema.GroupResource, obj runtime.Object) corev1.ResourceList {
	out := corev1.ResourceList{}
	if p, ok := obj.(*corev1.Pod); ok && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
		return out
	}
	one := resource.MustParse("1")
	out[CountName(gr)] = one
	if gr.Group == "" {
		if n, ok := legacyCounts[gr.Resource]; ok {
			out[n] = one
		}
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		podUsage(o, out)
	case *corev1.Service:
		switch o.Spec.Type {
		case corev1.ServiceTypeNodePort:
			out[corev1.ResourceServicesNodePorts] = *resource.NewQuantity(int64(len(o.Spec.Ports)), resource.DecimalSI)
		case corev1.ServiceTypeLoadBalancer:
			out[corev1.ResourceServicesLoadBalancers] = one
			out[corev1.ResourceServicesNodePorts] = *resource.NewQuantity(int64(len(o.Spec.Ports)), resource.DecimalSI)
		}
	}
	return out
}

// podUsage adds a pod's compute resources: the larger of the sum of its
// containers and its largest init container, plus its overhead.
func podUsage(p *corev1.Pod, out corev1.ResourceList) {
	req, lim := PodRequestsAndLimits(p)
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if q, ok := req[r]; ok {
			out[corev1.ResourceName(corev1.DefaultResourceRequestsPrefix+string(r))] = q
			out[r] = q
		}
		if q, ok := lim[r]; ok {
			out[corev1.ResourceName("limits."+string(r))] = q
		}
	}
	// As kube's pod evaluator: hugepages-* count under their own name and
	// requests.*; extended resources (example.com/dongle) only as
	// requests.* (the one form a quota may name them in).
	for r, q := range req {
		switch {
		case strings.HasPrefix(string(r), corev1.ResourceHugePagesPrefix):
			out[r] = q
			out[corev1.ResourceName(corev1.DefaultResourceRequestsPrefix+string(r))] = q
		case isExtendedResourceName(r):
			out[corev1.ResourceName(corev1.DefaultResourceRequestsPrefix+string(r))] = q
		}
	}
}

// isExtendedResourceName: a resource outside the kubernetes.io domain
// (domain/name, not itself a requests.* name), as kube's helper decides.
func isExtendedResourceName(r corev1.ResourceName) bool {
	s := string(r)
	if strings.HasPrefix(s, corev1.DefaultResourceRequestsPrefix) {
		return false
	}
	domain, _, ok := strings.Cut(s, "/")
	if !ok || domain == "kubernetes.io" || strings.HasSuffix(domain, ".kubernetes.io") {
		return false
	}
	return len(validation.IsQualifiedName(s)) == 0
}

// PodRequestsAndLimits sums a pod's effective requests and limits.
func PodRequestsAndLimits(p *corev1.Pod) (req, lim corev1.ResourceList) {
	req, lim = corev1.ResourceList{}, corev1.ResourceList{}
	for _, c := range p.Spec.Containers {
		addTo(req, c.Resources.Requests)
		addTo(lim, c.Resources.Limits)
	}
	for _, c := range p.Spec.InitContainers {
		maxTo(req, c.Resources.Requests)
		maxTo(lim, c.Resources.Limits)
	}
	addTo(req, p.Spec.Overhead)
	if len(lim) > 0 {
		addTo(lim, p.Spec.Overhead)
	}
	return req, lim
}

func addTo(dst, src corev1.ResourceList) {
	for k, v := range src {
		q := dst[k]
		q.Add(v)
		dst[k] = q
	}
}

func maxTo(dst, src corev1.ResourceList) {
	for k, v := range src {
		if q, ok := dst[k]; !ok || v.Cmp(q) > 0 {
			dst[k] = v.DeepCopy()
		}
	}
}

// Add returns a+b.
func Add(a, b corev1.ResourceList) corev1.ResourceList {
	out := a.DeepCopy()
	if out == nil {
		out = corev1.ResourceList{}
	}
	addTo(out, b)
	return out
}

// Mask keeps the names of l that are in names.
func Mask(l corev1.ResourceList, names []corev1.ResourceName) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, n := range names {
		if q, ok := l[n]; ok {
			out[n] = q
		}
	}
	return out
}

// Names lists the names of l, sorted.
func Names(l corev1.ResourceList) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(l))
	for n := range l {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Exceeded lists the names of used that are above hard, sorted.
func Exceeded(used, hard corev1.ResourceList) []corev1.ResourceName {
	var out []corev1.ResourceName
	for _, n := range Names(used) {
		if h, ok := hard[n]; ok {
			u := used[n]
			if u.Cmp(h) > 0 {
				out = append(out, n)
			}
		}
	}
	return out
}

// PrettyPrint renders "cpu=2,memory=1Gi" as Kubernetes' messages do.
func PrettyPrint(l corev1.ResourceList) string {
	parts := make([]string, 0, len(l))
	for _, n := range Names(l) {
		q := l[n]
		parts = append(parts, fmt.Sprintf("%v=%v", n, q.String()))
	}
	return strings.Join(parts, ",")
}

// Equal reports whether two lists hold the same quantities.
func Equal(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for n, q := range a {
		if o, ok := b[n]; !ok || o.Cmp(q) != 0 {
			return false
		}
	}
	return true
}

// Matches reports whether a quota with these scopes counts obj (scopes
// apply to pods; other objects match only unscoped quotas).
func Matches(q *corev1.ResourceQuota, obj runtime.Object) bool {
	scopes := append([]corev1.ResourceQuotaScope(nil), q.Spec.Scopes...)
	var sel []corev1.ScopedResourceSelectorRequirement
	if q.Spec.ScopeSelector != nil {
		sel = q.Spec.ScopeSelector.MatchExpressions
	}
	if len(scopes) == 0 && len(sel) == 0 {
		return true
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return false
	}
	for _, s := range scopes {
		if !scopeMatches(s, p) {
			return false
		}
	}
	for _, r := range sel {
		if r.ScopeName == corev1.ResourceQuotaScopePriorityClass {
			if !priorityMatches(r, p) {
				return false
			}
			continue
		}
		m := scopeMatches(r.ScopeName, p)
		if r.Operator == corev1.ScopeSelectorOpDoesNotExist {
			m = !m
		}
		if !m {
			return false
		}
	}
	return true
}

func scopeMatches(s corev1.ResourceQuotaScope, p *corev1.Pod) bool {
	switch s {
	case corev1.ResourceQuotaScopeTerminating:
		return p.Spec.ActiveDeadlineSeconds != nil && *p.Spec.ActiveDeadlineSeconds >= 0
	case corev1.ResourceQuotaScopeNotTerminating:
		return p.Spec.ActiveDeadlineSeconds == nil || *p.Spec.ActiveDeadlineSeconds < 0
	case corev1.ResourceQuotaScopeBestEffort:
		return isBestEffort(p)
	case corev1.ResourceQuotaScopeNotBestEffort:
		return !isBestEffort(p)
	}
	return false
}

func priorityMatches(r corev1.ScopedResourceSelectorRequirement, p *corev1.Pod) bool {
	has := false
	for _, v := range r.Values {
		if v == p.Spec.PriorityClassName {
			has = true
		}
	}
	switch selection.Operator(r.Operator) {
	case selection.In:
		return has
	case selection.NotIn:
		return !has
	case selection.Exists:
		return p.Spec.PriorityClassName != ""
	case selection.DoesNotExist:
		return p.Spec.PriorityClassName == ""
	}
	return false
}

func isBestEffort(p *corev1.Pod) bool {
	for _, c := range append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; ok {
				return false
			}
			if _, ok := c.Resources.Limits[r]; ok {
				return false
			}
		}
	}
	return true
}

// Tracked reports whether a quota tracks any name of usage.
func Tracked(hard, usage corev1.ResourceList) bool {
	for n := range usage {
		if _, ok := hard[n]; ok {
			return true
		}
	}
	return false
}

// MissingConstraints lists the compute names a quota tracks that some
// container of the pod does not set (a quota on cpu requires every
// container to request cpu), sorted.
func MissingConstraints(p *corev1.Pod, hard corev1.ResourceList) []string {
	missing := map[string]bool{}
	check := func(c corev1.Container) {
		for n := range hard {
			var l corev1.ResourceList
			var r corev1.ResourceName
			switch n {
			case corev1.ResourceCPU, corev1.ResourceRequestsCPU:
				l, r = c.Resources.Requests, corev1.ResourceCPU
			case corev1.ResourceMemory, corev1.ResourceRequestsMemory:
				l, r = c.Resources.Requests, corev1.ResourceMemory
			case corev1.ResourceLimitsCPU:
				l, r = c.Resources.Limits, corev1.ResourceCPU
			case corev1.ResourceLimitsMemory:
				l, r = c.Resources.Limits, corev1.ResourceMemory
			default:
				continue
			}
			if _, ok := l[r]; !ok {
				missing[string(n)] = true
			}
		}
	}
	for _, c := range p.Spec.InitContainers {
		check(c)
	}
	for _, c := range p.Spec.Containers {
		check(c)
	}
	out := make([]string, 0, len(missing))
	for n := range missing {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
