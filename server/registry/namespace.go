package registry

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Namespaces are cluster-scoped; their status.phase is Active until a
// delete sets Terminating.
func namespaceKind() *Kind {
	return &Kind{
		GVK:                 corev1.SchemeGroupVersion.WithKind("Namespace"),
		Resource:            "namespaces",
		ShortNames:          []string{"ns"},
		HasStatus:           true,
		HasGeneration:       false,
		ReturnDeletedObject: true,
		NameFn:              validation.ValidateNamespaceName,
		newObject:           func() runtime.Object { return &corev1.Namespace{} },
		newList:             func() runtime.Object { return &corev1.NamespaceList{} },
		prepareForCreate: func(obj runtime.Object) {
			ns := obj.(*corev1.Namespace)
			ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
		},
		defaults: func(obj runtime.Object) {
			ns := obj.(*corev1.Namespace)
			if ns.Status.Phase == "" {
				ns.Status.Phase = corev1.NamespaceActive
			}
			// kube-apiserver labels every namespace with its name.
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			ns.Labels[corev1.LabelMetadataName] = ns.Name
		},
		validate: func(obj runtime.Object) field.ErrorList {
			ns := obj.(*corev1.Namespace)
			var errs field.ErrorList
			for i, f := range ns.Spec.Finalizers {
				errs = append(errs, validation.ValidateFinalizerName(string(f), field.NewPath("spec", "finalizers").Index(i))...)
			}
			return errs
		},
		fieldNames: []string{"status.phase"},
		fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.phase": string(obj.(*corev1.Namespace).Status.Phase)}
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Status", "string", "The status of the namespace", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			ns := obj.(*corev1.Namespace)
			return []any{ns.Name, string(ns.Status.Phase), Age(ns.CreationTimestamp, now)}
		},
	}
}
