package registry

import (
	"slices"
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
		extraSubresources:   []Subresource{{Name: SubFinalize, GVK: corev1.SchemeGroupVersion.WithKind("Namespace"), Verbs: []string{"update"}}},
		prepareForCreate: func(obj runtime.Object) {
			ns := obj.(*corev1.Namespace)
			ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
			// As kube-apiserver: the namespace controller's finalizer
			// holds a deleted namespace until its content is gone.
			if !slices.Contains(ns.Spec.Finalizers, corev1.FinalizerKubernetes) {
				ns.Spec.Finalizers = append(ns.Spec.Finalizers, corev1.FinalizerKubernetes)
			}
		},
		// spec.finalizers change only through namespaces/finalize.
		prepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.Namespace).Spec.Finalizers = old.(*corev1.Namespace).Spec.Finalizers
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
