package registry

import (
	"fmt"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Limits kube-apiserver puts on a Job's policies.
const (
	maxPodFailurePolicyRules   = 20
	maxPodFailurePolicyCodes   = 255
	maxSuccessPolicyRules      = 20
	maxBackoffLimitPerIndexJob = 100_000 // completions of a job with backoffLimitPerIndex
)

// validateJobPolicies checks podFailurePolicy, successPolicy,
// backoffLimitPerIndex and maxFailedIndexes as kube-apiserver does.
func validateJobPolicies(s *batchv1.JobSpec, sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	indexed := s.CompletionMode != nil && *s.CompletionMode == batchv1.IndexedCompletion
	if s.BackoffLimitPerIndex != nil {
		p := sp.Child("backoffLimitPerIndex")
		switch {
		case *s.BackoffLimitPerIndex < 0:
			errs = append(errs, field.Invalid(p, *s.BackoffLimitPerIndex, "must be greater than or equal to 0"))
		case !indexed:
			errs = append(errs, field.Invalid(p, *s.BackoffLimitPerIndex, "requires indexed completion mode"))
		case s.Completions != nil && *s.Completions > maxBackoffLimitPerIndexJob:
			errs = append(errs, field.Invalid(sp.Child("completions"), *s.Completions,
				fmt.Sprintf("must be less than or equal to %d when backoffLimitPerIndex is specified", maxBackoffLimitPerIndexJob)))
		}
	}
	if s.MaxFailedIndexes != nil {
		p := sp.Child("maxFailedIndexes")
		switch {
		case s.BackoffLimitPerIndex == nil:
			errs = append(errs, field.Required(sp.Child("backoffLimitPerIndex"), "when maxFailedIndexes is specified"))
		case *s.MaxFailedIndexes < 0:
			errs = append(errs, field.Invalid(p, *s.MaxFailedIndexes, "must be greater than or equal to 0"))
		case s.Completions != nil && *s.MaxFailedIndexes > *s.Completions:
			errs = append(errs, field.Invalid(p, *s.MaxFailedIndexes, "must be less than or equal to completions"))
		}
	}
	if s.PodFailurePolicy != nil {
		errs = append(errs, validatePodFailurePolicy(s, sp)...)
	}
	if s.SuccessPolicy != nil {
		errs = append(errs, validateSuccessPolicy(s, indexed, sp)...)
	}
	return errs
}

func validatePodFailurePolicy(s *batchv1.JobSpec, sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	p := sp.Child("podFailurePolicy")
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		errs = append(errs, field.Invalid(sp.Child("template", "spec", "restartPolicy"), s.Template.Spec.RestartPolicy,
			"only \"Never\" is supported when podFailurePolicy is specified"))
	}
	rules := s.PodFailurePolicy.Rules
	if len(rules) > maxPodFailurePolicyRules {
		errs = append(errs, field.TooMany(p.Child("rules"), len(rules), maxPodFailurePolicyRules))
	}
	containers := sets.New[string]()
	for _, c := range append(append([]corev1.Container(nil), s.Template.Spec.InitContainers...), s.Template.Spec.Containers...) {
		containers.Insert(c.Name)
	}
	actions := []string{string(batchv1.PodFailurePolicyActionFailJob), string(batchv1.PodFailurePolicyActionFailIndex),
		string(batchv1.PodFailurePolicyActionIgnore), string(batchv1.PodFailurePolicyActionCount)}
	for i, r := range rules {
		rp := p.Child("rules").Index(i)
		switch {
		case !contains(actions, string(r.Action)):
			errs = append(errs, field.NotSupported(rp.Child("action"), r.Action, actions))
		case r.Action == batchv1.PodFailurePolicyActionFailIndex && s.BackoffLimitPerIndex == nil:
			errs = append(errs, field.Invalid(rp.Child("action"), r.Action, "requires the backoffLimitPerIndex to be set"))
		}
		switch {
		case r.OnExitCodes != nil && r.OnPodConditions != nil:
			errs = append(errs, field.Invalid(rp, field.OmitValueType{}, "specifying both OnExitCodes and OnPodConditions is not supported"))
		case r.OnExitCodes == nil && r.OnPodConditions == nil:
			errs = append(errs, field.Invalid(rp, field.OmitValueType{}, "specifying one of OnExitCodes and OnPodConditions is required"))
		case r.OnExitCodes != nil:
			errs = append(errs, validateOnExitCodes(r.OnExitCodes, containers, rp.Child("onExitCodes"))...)
		default:
			for k, pat := range r.OnPodConditions {
				cp := rp.Child("onPodConditions").Index(k)
				if pat.Type == "" {
					errs = append(errs, field.Required(cp.Child("type"), ""))
				}
				statuses := []string{string(corev1.ConditionTrue), string(corev1.ConditionFalse), string(corev1.ConditionUnknown)}
				if !contains(statuses, string(pat.Status)) {
					errs = append(errs, field.NotSupported(cp.Child("status"), pat.Status, statuses))
				}
			}
		}
	}
	return errs
}

func validateOnExitCodes(req *batchv1.PodFailurePolicyOnExitCodesRequirement, containers sets.Set[string], p *field.Path) field.ErrorList {
	var errs field.ErrorList
	ops := []string{string(batchv1.PodFailurePolicyOnExitCodesOpIn), string(batchv1.PodFailurePolicyOnExitCodesOpNotIn)}
	if !contains(ops, string(req.Operator)) {
		errs = append(errs, field.NotSupported(p.Child("operator"), req.Operator, ops))
	}
	if req.ContainerName != nil && !containers.Has(*req.ContainerName) {
		errs = append(errs, field.Invalid(p.Child("containerName"), *req.ContainerName, "must be one of the container or initContainer names in the pod template"))
	}
	vp := p.Child("values")
	switch {
	case len(req.Values) == 0:
		errs = append(errs, field.Invalid(vp, req.Values, "at least one value is required"))
	case len(req.Values) > maxPodFailurePolicyCodes:
		errs = append(errs, field.TooMany(vp, len(req.Values), maxPodFailurePolicyCodes))
	}
	for i, v := range req.Values {
		switch {
		case req.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn && v == 0:
			errs = append(errs, field.Invalid(vp.Index(i), v, "must not be 0 for the In operator"))
		case i > 0 && req.Values[i-1] == v:
			errs = append(errs, field.Duplicate(vp.Index(i), v))
		case i > 0 && req.Values[i-1] > v:
			errs = append(errs, field.Invalid(vp.Index(i), v, "must be ordered"))
		}
	}
	return errs
}

func validateSuccessPolicy(s *batchv1.JobSpec, indexed bool, sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	p := sp.Child("successPolicy")
	if !indexed {
		errs = append(errs, field.Invalid(sp.Child("completionMode"), s.CompletionMode,
			"requires indexed completion mode when successPolicy is specified"))
	}
	rules := s.SuccessPolicy.Rules
	rp := p.Child("rules")
	switch {
	case len(rules) == 0:
		errs = append(errs, field.Required(rp, "at least one rules must be specified when the successPolicy is specified"))
	case len(rules) > maxSuccessPolicyRules:
		errs = append(errs, field.TooMany(rp, len(rules), maxSuccessPolicyRules))
	}
	for i, r := range rules {
		ip := rp.Index(i)
		if r.SucceededIndexes == nil && r.SucceededCount == nil {
			errs = append(errs, field.Required(ip, "at least one of succeededCount or succeededIndexes must be specified"))
		}
		if r.SucceededIndexes != nil && s.Completions != nil {
			if err := checkIndexList(*r.SucceededIndexes, *s.Completions); err != "" {
				errs = append(errs, field.Invalid(ip.Child("succeededIndexes"), *r.SucceededIndexes, err))
			}
		}
		if r.SucceededCount != nil {
			switch {
			case *r.SucceededCount < 0:
				errs = append(errs, field.Invalid(ip.Child("succeededCount"), *r.SucceededCount, "must be greater than or equal to 0"))
			case s.Completions != nil && *r.SucceededCount > *s.Completions:
				errs = append(errs, field.Invalid(ip.Child("succeededCount"), *r.SucceededCount,
					fmt.Sprintf("must be less than or equal to %d (the number of specified completions)", *s.Completions)))
			}
		}
	}
	return errs
}

// checkIndexList checks an index list ("1,3-5": ordered, not
// overlapping, each index below completions) and says what is wrong.
func checkIndexList(v string, completions int32) string {
	last := -1
	for _, part := range strings.Split(v, ",") {
		a, b, isRange := strings.Cut(part, "-")
		lo, err := strconv.Atoi(a)
		if err != nil {
			return "cannot convert string to integer for index: " + strconv.Quote(a)
		}
		hi := lo
		if isRange {
			if hi, err = strconv.Atoi(b); err != nil {
				return "cannot convert string to integer for index: " + strconv.Quote(b)
			}
			if lo >= hi {
				return "range must be ordered: " + part
			}
		}
		switch {
		case lo < 0:
			return fmt.Sprintf("index must be greater than or equal to 0: %d", lo)
		case hi >= int(completions):
			return fmt.Sprintf("too large: %d, must be less than completions %d", hi, completions)
		case lo <= last:
			return "overlapping or not ordered intervals"
		}
		last = hi
	}
	return ""
}

// validateJobPoliciesUpdate: the pod failure policy, the success policy
// and backoffLimitPerIndex are immutable.
func validateJobPoliciesUpdate(s, old *batchv1.JobSpec, sp *field.Path) field.ErrorList {
	errs := apivalidation.ValidateImmutableField(s.PodFailurePolicy, old.PodFailurePolicy, sp.Child("podFailurePolicy"))
	errs = append(errs, apivalidation.ValidateImmutableField(s.SuccessPolicy, old.SuccessPolicy, sp.Child("successPolicy"))...)
	errs = append(errs, apivalidation.ValidateImmutableField(s.BackoffLimitPerIndex, old.BackoffLimitPerIndex, sp.Child("backoffLimitPerIndex"))...)
	return errs
}
