package registry

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// PodTemplates (core v1) are stored pod templates: defaulted and
// validated as a workload's template; no controller acts on them.
func podTemplateKind() *Kind {
	return &Kind{
		GVK:        corev1.SchemeGroupVersion.WithKind("PodTemplate"),
		Resource:   "podtemplates",
		Namespaced: true,
		newObject:  func() runtime.Object { return &corev1.PodTemplate{} },
		newList:    func() runtime.Object { return &corev1.PodTemplateList{} },
		defaults: func(obj runtime.Object) {
			defaultPodSpec(&obj.(*corev1.PodTemplate).Template.Spec)
		},
		validate: func(obj runtime.Object) field.ErrorList {
			t := &obj.(*corev1.PodTemplate).Template
			tp := field.NewPath("template")
			errs := metav1validation.ValidateLabels(t.Labels, tp.Child("metadata", "labels"))
			errs = append(errs, apivalidation.ValidateAnnotations(t.Annotations, tp.Child("metadata", "annotations"))...)
			return append(errs, validatePodSpec(&t.Spec, tp.Child("spec"), nil)...)
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Containers", "string", "Names of each container in the template.", 0),
			col("Images", "string", "Images referenced by each container in the template.", 0),
			col("Pod Labels", "string", "The labels for the pod template.", 0),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			t := obj.(*corev1.PodTemplate)
			names, images := containerNames(t.Template.Spec.Containers)
			return []any{t.Name, names, images, selectorString(t.Template.Labels)}
		},
	}
}
