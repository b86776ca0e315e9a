package registry

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// LimitRanges are defaulted, stored and validated; the LimitRanger
// admission plugin (server/admission) applies them to pods.
func limitRangeKind() *Kind {
	return &Kind{
		GVK:        corev1.SchemeGroupVersion.WithKind("LimitRange"),
		Resource:   "limitranges",
		Namespaced: true,
		ShortNames: []string{"limits"},
		newObject:  func() runtime.Object { return &corev1.LimitRange{} },
		newList:    func() runtime.Object { return &corev1.LimitRangeList{} },
		defaults:   func(obj runtime.Object) { defaultLimitRange(obj.(*corev1.LimitRange)) },
		validate:   func(obj runtime.Object) field.ErrorList { return validateLimitRange(obj.(*corev1.LimitRange)) },
		columns:    []metav1.TableColumnDefinition{nameColumn, createdAtColumn},
		cells: func(obj runtime.Object, now time.Time) []any {
			l := obj.(*corev1.LimitRange)
			return []any{l.Name, createdAt(l.CreationTimestamp)}
		},
	}
}

// defaultLimitRange fills a Container item's defaults as Kubernetes does:
// a missing default limit is the max, a missing default request the
// default limit, else the min.
func defaultLimitRange(l *corev1.LimitRange) {
	for i := range l.Spec.Limits {
		item := &l.Spec.Limits[i]
		if item.Type != corev1.LimitTypeContainer {
			continue
		}
		if item.Default == nil {
			item.Default = corev1.ResourceList{}
		}
		if item.DefaultRequest == nil {
			item.DefaultRequest = corev1.ResourceList{}
		}
		fill := func(dst, src corev1.ResourceList) {
			for name, q := range src {
				if _, ok := dst[name]; !ok {
					dst[name] = q.DeepCopy()
				}
			}
		}
		fill(item.Default, item.Max)
		fill(item.DefaultRequest, item.Default)
		fill(item.DefaultRequest, item.Min)
	}
}

func validateLimitRange(l *corev1.LimitRange) field.ErrorList {
	var errs field.ErrorList
	types := []string{string(corev1.LimitTypePod), string(corev1.LimitTypeContainer), string(corev1.LimitTypePersistentVolumeClaim)}
	seen := map[corev1.LimitType]bool{}
	for i, item := range l.Spec.Limits {
		p := field.NewPath("spec", "limits").Index(i)
		if !contains(types, string(item.Type)) {
			errs = append(errs, field.NotSupported(p.Child("type"), item.Type, types))
		}
		if seen[item.Type] {
			errs = append(errs, field.Duplicate(p.Child("type"), item.Type))
		}
		seen[item.Type] = true
		for _, part := range []struct {
			name string
			rl   corev1.ResourceList
		}{{"max", item.Max}, {"min", item.Min}, {"default", item.Default}, {"defaultRequest", item.DefaultRequest}, {"maxLimitRequestRatio", item.MaxLimitRequestRatio}} {
			errs = append(errs, validateResourceList(part.rl, p.Child(part.name))...)
		}
		if item.Type == corev1.LimitTypePod && (len(item.Default) > 0 || len(item.DefaultRequest) > 0) {
			errs = append(errs, field.Forbidden(p.Child("default"), "may not be specified when `type` is 'Pod'"))
		}
		for name, minQ := range item.Min {
			if maxQ, ok := item.Max[name]; ok && minQ.Cmp(maxQ) > 0 {
				errs = append(errs, field.Invalid(p.Child("min").Key(string(name)), minQ.String(),
					"min value "+minQ.String()+" is greater than max value "+maxQ.String()))
			}
		}
		for name, def := range item.Default {
			if maxQ, ok := item.Max[name]; ok && def.Cmp(maxQ) > 0 {
				errs = append(errs, field.Invalid(p.Child("default").Key(string(name)), def.String(),
					"default value "+def.String()+" is greater than max value "+maxQ.String()))
			}
		}
	}
	return errs
}
