package registry

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ResourceQuotas are stored and validated; the quota admission and
// controller that fill status.used come later.
func resourceQuotaKind() *Kind {
	return &Kind{
		GVK:        corev1.SchemeGroupVersion.WithKind("ResourceQuota"),
		Resource:   "resourcequotas",
		Namespaced: true,
		ShortNames: []string{"quota"},
		HasStatus:  true,
		newObject:  func() runtime.Object { return &corev1.ResourceQuota{} },
		newList:    func() runtime.Object { return &corev1.ResourceQuotaList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*corev1.ResourceQuota).Status = corev1.ResourceQuotaStatus{}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			q := obj.(*corev1.ResourceQuota)
			errs := validateResourceList(q.Spec.Hard, field.NewPath("spec", "hard"))
			scopes := []string{string(corev1.ResourceQuotaScopeTerminating), string(corev1.ResourceQuotaScopeNotTerminating),
				string(corev1.ResourceQuotaScopeBestEffort), string(corev1.ResourceQuotaScopeNotBestEffort),
				string(corev1.ResourceQuotaScopePriorityClass), string(corev1.ResourceQuotaScopeCrossNamespacePodAffinity),
				string(corev1.ResourceQuotaScopeVolumeAttributesClass)}
			for i, s := range q.Spec.Scopes {
				if !contains(scopes, string(s)) {
					errs = append(errs, field.NotSupported(field.NewPath("spec", "scopes").Index(i), s, scopes))
				}
			}
			return errs
		},
		validateStatus: func(obj runtime.Object) field.ErrorList {
			q := obj.(*corev1.ResourceQuota)
			errs := validateResourceList(q.Status.Hard, field.NewPath("status", "hard"))
			return append(errs, validateResourceList(q.Status.Used, field.NewPath("status", "used"))...)
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			ageColumn,
			col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume.", 0),
			col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.", 0),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			q := obj.(*corev1.ResourceQuota)
			req, lim := quotaUsage(q)
			return []any{q.Name, Age(q.CreationTimestamp, now), req, lim}
		},
	}
}

// validateResourceList: qualified resource names with non-negative values.
func validateResourceList(rl corev1.ResourceList, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for name, q := range rl {
		rp := p.Key(string(name))
		for _, msg := range utilvalidation.IsQualifiedName(string(name)) {
			errs = append(errs, field.Invalid(rp, name, msg))
		}
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(rp, q.String(), "must be greater than or equal to 0"))
		}
	}
	return errs
}

// quotaUsage renders "used/hard" pairs split into requests and limits as
// kubectl does.
func quotaUsage(q *corev1.ResourceQuota) (requests, limits string) {
	names := make([]string, 0, len(q.Spec.Hard))
	for n := range q.Spec.Hard {
		names = append(names, string(n))
	}
	sort.Strings(names)
	var req, lim []string
	for _, n := range names {
		hard := q.Spec.Hard[corev1.ResourceName(n)]
		used := q.Status.Used[corev1.ResourceName(n)]
		item := fmt.Sprintf("%s: %s/%s", n, used.String(), hard.String())
		if strings.HasPrefix(n, "limits.") {
			lim = append(lim, item)
		} else {
			req = append(req, item)
		}
	}
	return strings.Join(req, ", "), strings.Join(lim, ", ")
}
