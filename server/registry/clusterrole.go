package registry

import (
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func clusterRoleKind() *Kind {
	return &Kind{
		GVK:       rbacv1.SchemeGroupVersion.WithKind("ClusterRole"),
		Resource:  "clusterroles",
		NameFn:    rbacNameFn,
		newObject: func() runtime.Object { return &rbacv1.ClusterRole{} },
		newList:   func() runtime.Object { return &rbacv1.ClusterRoleList{} },
		validate: func(obj runtime.Object) field.ErrorList {
			r := obj.(*rbacv1.ClusterRole)
			errs := validatePolicyRules(r.Rules, false, field.NewPath("rules"))
			return append(errs, validateAggregationRule(r.AggregationRule)...)
		},
		columns: []metav1.TableColumnDefinition{nameColumn, createdAtColumn},
		cells: func(obj runtime.Object, now time.Time) []any {
			r := obj.(*rbacv1.ClusterRole)
			return []any{r.Name, createdAt(r.CreationTimestamp)}
		},
	}
}
