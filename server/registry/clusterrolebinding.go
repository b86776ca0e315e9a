package registry

import (
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func clusterRoleBindingKind() *Kind {
	return &Kind{
		GVK:       rbacv1.SchemeGroupVersion.WithKind("ClusterRoleBinding"),
		Resource:  "clusterrolebindings",
		NameFn:    rbacNameFn,
		newObject: func() runtime.Object { return &rbacv1.ClusterRoleBinding{} },
		newList:   func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} },
		defaults: func(obj runtime.Object) {
			b := obj.(*rbacv1.ClusterRoleBinding)
			defaultBinding(&b.RoleRef, b.Subjects)
		},
		validate: func(obj runtime.Object) field.ErrorList {
			b := obj.(*rbacv1.ClusterRoleBinding)
			return append(validateRoleRef(b.RoleRef, false), validateSubjects(b.Subjects)...)
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateRoleRefUpdate(obj.(*rbacv1.ClusterRoleBinding).RoleRef, old.(*rbacv1.ClusterRoleBinding).RoleRef)
		},
		columns: bindingColumns,
		cells: func(obj runtime.Object, now time.Time) []any {
			b := obj.(*rbacv1.ClusterRoleBinding)
			u, g, s := bindingSubjects(b.Subjects)
			return []any{b.Name, roleRefString(b.RoleRef), Age(b.CreationTimestamp, now), u, g, s}
		},
	}
}
