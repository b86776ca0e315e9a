package registry

import (
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var createdAtColumn = col("Created At", "date", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0)

func createdAt(t metav1.Time) string { return t.UTC().Format(time.RFC3339) }

func roleKind() *Kind {
	return &Kind{
		GVK:        rbacv1.SchemeGroupVersion.WithKind("Role"),
		Resource:   "roles",
		Namespaced: true,
		NameFn:     rbacNameFn,
		newObject:  func() runtime.Object { return &rbacv1.Role{} },
		newList:    func() runtime.Object { return &rbacv1.RoleList{} },
		validate: func(obj runtime.Object) field.ErrorList {
			return validatePolicyRules(obj.(*rbacv1.Role).Rules, true, field.NewPath("rules"))
		},
		columns: []metav1.TableColumnDefinition{nameColumn, createdAtColumn},
		cells: func(obj runtime.Object, now time.Time) []any {
			r := obj.(*rbacv1.Role)
			return []any{r.Name, createdAt(r.CreationTimestamp)}
		},
	}
}
