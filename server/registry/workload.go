package registry

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Shared by the apps/v1 workload kinds (deployments, replicasets).

// validateSelectorAndTemplate checks a workload's selector and pod template:
// the selector is required and non-empty, it must match the template's
// labels, and the template's pods must restart Always.
func validateSelectorAndTemplate(sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, kind string) field.ErrorList {
	return validateSelectorAndTemplateAt(field.NewPath("spec"), sel, tmpl, kind, []string{string(corev1.RestartPolicyAlways)})
}

// validateSelectorAndTemplateAt checks selector and template under sp
// (spec, or spec.jobTemplate.spec) with the allowed restart policies.
func validateSelectorAndTemplateAt(sp *field.Path, sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, kind string, restart []string) field.ErrorList {
	var errs field.ErrorList
	if sel == nil {
		errs = append(errs, field.Required(sp.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, sp.Child("selector"))...)
		if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(sp.Child("selector"), sel, "empty selector is invalid for "+kind))
		}
	}
	tp := sp.Child("template")
	errs = append(errs, metav1validation.ValidateLabels(tmpl.Labels, tp.Child("metadata", "labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(tmpl.Annotations, tp.Child("metadata", "annotations"))...)
	if sel != nil {
		if s, err := metav1.LabelSelectorAsSelector(sel); err == nil && !s.Empty() && !s.Matches(labels.Set(tmpl.Labels)) {
			errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), tmpl.Labels, "`selector` does not match template `labels`"))
		}
	}
	errs = append(errs, validatePodSpec(&tmpl.Spec, tp.Child("spec"), restart)...)
	return errs
}

func validateReplicas(r *int32, p *field.Path) field.ErrorList {
	if r != nil && *r < 0 {
		return field.ErrorList{field.Invalid(p, *r, "must be greater than or equal to 0")}
	}
	return nil
}

// validateSelectorUpdate: apps/v1 selectors are immutable.
func validateSelectorUpdate(sel, old *metav1.LabelSelector) field.ErrorList {
	return apivalidation.ValidateImmutableField(sel, old, field.NewPath("spec", "selector"))
}

func containerNames(cs []corev1.Container) (names, images string) {
	n := make([]string, 0, len(cs))
	im := make([]string, 0, len(cs))
	for _, c := range cs {
		n = append(n, c.Name)
		im = append(im, c.Image)
	}
	return strings.Join(n, ","), strings.Join(im, ",")
}

func defaultInt32(p **int32, v int32) {
	if *p == nil {
		*p = &v
	}
}
