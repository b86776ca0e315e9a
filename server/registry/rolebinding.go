package registry

import (
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var bindingColumns = []metav1.TableColumnDefinition{
	nameColumn,
	col("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.", 0),
	ageColumn,
	col("Users", "string", "Users in the binding", 1),
	col("Groups", "string", "Groups in the binding", 1),
	col("ServiceAccounts", "string", "ServiceAccounts in the binding", 1),
}

func roleBindingKind() *Kind {
	return &Kind{
		GVK:        rbacv1.SchemeGroupVersion.WithKind("RoleBinding"),
		Resource:   "rolebindings",
		Namespaced: true,
		NameFn:     rbacNameFn,
		newObject:  func() runtime.Object { return &rbacv1.RoleBinding{} },
		newList:    func() runtime.Object { return &rbacv1.RoleBindingList{} },
		defaults: func(obj runtime.Object) {
			b := obj.(*rbacv1.RoleBinding)
			defaultBinding(&b.RoleRef, b.Subjects)
		},
		validate: func(obj runtime.Object) field.ErrorList {
			b := obj.(*rbacv1.RoleBinding)
			return append(validateRoleRef(b.RoleRef, true), validateSubjects(b.Subjects)...)
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateRoleRefUpdate(obj.(*rbacv1.RoleBinding).RoleRef, old.(*rbacv1.RoleBinding).RoleRef)
		},
		columns: bindingColumns,
		cells: func(obj runtime.Object, now time.Time) []any {
			b := obj.(*rbacv1.RoleBinding)
			u, g, s := bindingSubjects(b.Subjects)
			return []any{b.Name, roleRefString(b.RoleRef), Age(b.CreationTimestamp, now), u, g, s}
		},
	}
}
