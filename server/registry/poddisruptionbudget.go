package registry

import (
	"strings"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func podDisruptionBudgetKind() *Kind {
	return &Kind{
		GVK:           policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"),
		Resource:      "poddisruptionbudgets",
		Namespaced:    true,
		ShortNames:    []string{"pdb"},
		HasStatus:     true,
		HasGeneration: true,
		newObject:     func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
		newList:       func() runtime.Object { return &policyv1.PodDisruptionBudgetList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*policyv1.PodDisruptionBudget).Status = policyv1.PodDisruptionBudgetStatus{}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			return validatePDBSpec(&obj.(*policyv1.PodDisruptionBudget).Spec)
		},
		validateStatus: func(obj runtime.Object) field.ErrorList {
			st := obj.(*policyv1.PodDisruptionBudget).Status
			sp := field.NewPath("status")
			var errs field.ErrorList
			for name, v := range map[string]int32{"disruptionsAllowed": st.DisruptionsAllowed, "currentHealthy": st.CurrentHealthy,
				"desiredHealthy": st.DesiredHealthy, "expectedPods": st.ExpectedPods} {
				if v < 0 {
					errs = append(errs, field.Invalid(sp.Child(name), v, "must be greater than or equal to 0"))
				}
			}
			return errs
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Min Available", "string", "Minimum number of pods that must be available after an eviction.", 0),
			col("Max Unavailable", "string", "Maximum number of pods that may be unavailable after an eviction.", 0),
			col("Allowed Disruptions", "integer", "Number of pod disruptions that are currently allowed.", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			p := obj.(*policyv1.PodDisruptionBudget)
			minA, maxU := "N/A", "N/A"
			if p.Spec.MinAvailable != nil {
				minA = p.Spec.MinAvailable.String()
			}
			if p.Spec.MaxUnavailable != nil {
				maxU = p.Spec.MaxUnavailable.String()
			}
			return []any{p.Name, minA, maxU, int64(p.Status.DisruptionsAllowed), Age(p.CreationTimestamp, now)}
		},
	}
}

func validatePDBSpec(s *policyv1.PodDisruptionBudgetSpec) field.ErrorList {
	var errs field.ErrorList
	sp := field.NewPath("spec")
	if s.MinAvailable != nil && s.MaxUnavailable != nil {
		errs = append(errs, field.Invalid(sp, s, "minAvailable and maxUnavailable cannot be both set"))
	}
	if s.MinAvailable != nil {
		errs = append(errs, validatePositiveIntOrPercent(*s.MinAvailable, sp.Child("minAvailable"))...)
	}
	if s.MaxUnavailable != nil {
		errs = append(errs, validatePositiveIntOrPercent(*s.MaxUnavailable, sp.Child("maxUnavailable"))...)
	}
	if s.Selector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(s.Selector, metav1validation.LabelSelectorValidationOptions{}, sp.Child("selector"))...)
	}
	if p := s.UnhealthyPodEvictionPolicy; p != nil {
		policies := []string{string(policyv1.IfHealthyBudget), string(policyv1.AlwaysAllow)}
		if !contains(policies, string(*p)) {
			errs = append(errs, field.NotSupported(sp.Child("unhealthyPodEvictionPolicy"), *p, policies))
		}
	}
	return errs
}

// validatePositiveIntOrPercent: an int >= 0 or a percentage 0%-100%.
func validatePositiveIntOrPercent(v intstr.IntOrString, p *field.Path) field.ErrorList {
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			return field.ErrorList{field.Invalid(p, v.IntVal, "must be greater than or equal to 0")}
		}
		return nil
	}
	s := v.StrVal
	n, err := intstr.GetScaledValueFromIntOrPercent(&v, 100, false)
	if !strings.HasSuffix(s, "%") || err != nil {
		return field.ErrorList{field.Invalid(p, s, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")}
	}
	if n < 0 || n > 100 {
		return field.ErrorList{field.Invalid(p, s, "must not be greater than 100%")}
	}
	return nil
}
