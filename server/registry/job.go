package registry

import (
	"fmt"
	"math"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// jobRestartPolicies are the restart policies a Job's pods may have.
var jobRestartPolicies = []string{string(corev1.RestartPolicyOnFailure), string(corev1.RestartPolicyNever)}

func jobKind() *Kind {
	return &Kind{
		GVK:           batchv1.SchemeGroupVersion.WithKind("Job"),
		Resource:      "jobs",
		Namespaced:    true,
		Categories:    []string{"all"},
		HasStatus:     true,
		HasGeneration: true,
		// A /status update keeps metadata changes (kube-apiserver resets
		// only the spec).
		statusKeepsMetadata: true,
		newObject:           func() runtime.Object { return &batchv1.Job{} },
		newList:             func() runtime.Object { return &batchv1.JobList{} },
		prepareForCreate: func(obj runtime.Object) {
			j := obj.(*batchv1.Job)
			j.Status = batchv1.JobStatus{}
			generateJobSelector(j)
		},
		defaults: func(obj runtime.Object) { defaultJobSpec(&obj.(*batchv1.Job).Spec) },
		validate: func(obj runtime.Object) field.ErrorList {
			return validateJobSpec(&obj.(*batchv1.Job).Spec, field.NewPath("spec"))
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateJobSpecUpdate(&obj.(*batchv1.Job).Spec, &old.(*batchv1.Job).Spec, field.NewPath("spec"))
		},
		fieldNames: []string{"status.successful"},
		fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.successful": fmt.Sprint(obj.(*batchv1.Job).Status.Succeeded)}
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Status", "string", "Status of the job.", 0),
			col("Completions", "string", "The completion status of the job.", 0),
			col("Duration", "string", "Time required to complete the job.", 0),
			ageColumn,
			col("Containers", "string", "Names of each container in the template.", 1),
			col("Images", "string", "Images referenced by each container in the template.", 1),
			col("Selector", "string", "A label query over pods that should match the pod count.", 1),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			j := obj.(*batchv1.Job)
			names, images := containerNames(j.Spec.Template.Spec.Containers)
			return []any{j.Name, jobStatus(j), jobCompletions(j), jobDuration(j, now), Age(j.CreationTimestamp, now),
				names, images, labelSelectorString(j.Spec.Selector)}
		},
	}
}

// generateJobSelector gives a Job without manualSelector the selector and
// pod labels kube-apiserver generates from its UID.
func generateJobSelector(j *batchv1.Job) {
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector {
		return
	}
	uid := string(j.UID)
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	for k, v := range map[string]string{
		batchv1.ControllerUidLabel: uid, "controller-uid": uid,
		batchv1.JobNameLabel: j.Name, "job-name": j.Name,
	} {
		j.Spec.Template.Labels[k] = v
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{batchv1.ControllerUidLabel: uid}}
	}
}

func defaultJobSpec(s *batchv1.JobSpec) {
	if s.Completions == nil && s.Parallelism == nil {
		one := int32(1)
		s.Completions = &one
	}
	defaultInt32(&s.Parallelism, 1)
	if s.BackoffLimitPerIndex == nil {
		defaultInt32(&s.BackoffLimit, 6)
	} else {
		defaultInt32(&s.BackoffLimit, math.MaxInt32)
	}
	if s.CompletionMode == nil {
		m := batchv1.NonIndexedCompletion
		s.CompletionMode = &m
	}
	if s.Suspend == nil {
		f := false
		s.Suspend = &f
	}
	if s.PodReplacementPolicy == nil {
		// A pod failure policy looks at failed pods only: it implies
		// replacing pods once they have failed.
		p := batchv1.TerminatingOrFailed
		if s.PodFailurePolicy != nil {
			p = batchv1.Failed
		}
		s.PodReplacementPolicy = &p
	}
	if s.PodFailurePolicy != nil {
		for i := range s.PodFailurePolicy.Rules {
			for k := range s.PodFailurePolicy.Rules[i].OnPodConditions {
				if pat := &s.PodFailurePolicy.Rules[i].OnPodConditions[k]; pat.Status == "" {
					pat.Status = corev1.ConditionTrue
				}
			}
		}
	}
	defaultPodSpec(&s.Template.Spec)
}

func validateJobSpec(s *batchv1.JobSpec, sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	for name, v := range map[string]*int32{"parallelism": s.Parallelism, "completions": s.Completions, "backoffLimit": s.BackoffLimit} {
		if v != nil && *v < 0 {
			errs = append(errs, field.Invalid(sp.Child(name), *v, "must be greater than or equal to 0"))
		}
	}
	if s.ActiveDeadlineSeconds != nil && *s.ActiveDeadlineSeconds <= 0 {
		errs = append(errs, field.Invalid(sp.Child("activeDeadlineSeconds"), *s.ActiveDeadlineSeconds, "must be greater than 0"))
	}
	if s.TTLSecondsAfterFinished != nil && *s.TTLSecondsAfterFinished < 0 {
		errs = append(errs, field.Invalid(sp.Child("ttlSecondsAfterFinished"), *s.TTLSecondsAfterFinished, "must be greater than or equal to 0"))
	}
	if m := s.CompletionMode; m != nil {
		modes := []string{string(batchv1.NonIndexedCompletion), string(batchv1.IndexedCompletion)}
		if !contains(modes, string(*m)) {
			errs = append(errs, field.NotSupported(sp.Child("completionMode"), *m, modes))
		}
		if *m == batchv1.IndexedCompletion && s.Completions == nil {
			errs = append(errs, field.Required(sp.Child("completions"), fmt.Sprintf("when completion mode is %s", batchv1.IndexedCompletion)))
		}
	}
	errs = append(errs, validateSelectorAndTemplateAt(sp, s.Selector, &s.Template, "job", jobRestartPolicies)...)
	errs = append(errs, validateJobPolicies(s, sp)...) // jobpolicy.go
	return errs
}

// validateJobSpecUpdate: the selector, the completion mode and (for a job
// that is not suspended) the pod template are immutable.
func validateJobSpecUpdate(s, old *batchv1.JobSpec, sp *field.Path) field.ErrorList {
	errs := apivalidation.ValidateImmutableField(s.Selector, old.Selector, sp.Child("selector"))
	errs = append(errs, apivalidation.ValidateImmutableField(s.CompletionMode, old.CompletionMode, sp.Child("completionMode"))...)
	if !apiequality.Semantic.DeepEqual(s.Template, old.Template) && (old.Suspend == nil || !*old.Suspend) {
		errs = append(errs, field.Invalid(sp.Child("template"), s.Template, "field is immutable"))
	}
	if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
		errs = append(errs, apivalidation.ValidateImmutableField(s.Completions, old.Completions, sp.Child("completions"))...)
	}
	errs = append(errs, validateJobPoliciesUpdate(s, old, sp)...)
	return errs
}

// jobStatus is the STATUS column, in kubectl's order of precedence
// (a finished job also carries SuccessCriteriaMet or FailureTarget).
func jobStatus(j *batchv1.Job) string {
	has := func(t batchv1.JobConditionType) bool {
		for _, c := range j.Status.Conditions {
			if c.Type == t && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}
	switch {
	case has(batchv1.JobComplete):
		return "Complete"
	case has(batchv1.JobFailed):
		return "Failed"
	case j.DeletionTimestamp != nil:
		return "Terminating"
	case has(batchv1.JobSuspended):
		return "Suspended"
	case has(batchv1.JobFailureTarget):
		return "FailureTarget"
	case has(batchv1.JobSuccessCriteriaMet):
		return "SuccessCriteriaMet"
	}
	return "Running"
}

func jobCompletions(j *batchv1.Job) string {
	switch {
	case j.Spec.Completions != nil:
		return fmt.Sprintf("%d/%d", j.Status.Succeeded, *j.Spec.Completions)
	case j.Spec.Parallelism != nil && *j.Spec.Parallelism > 1:
		return fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, *j.Spec.Parallelism)
	}
	return fmt.Sprintf("%d/1", j.Status.Succeeded)
}

func jobDuration(j *batchv1.Job, now time.Time) string {
	switch {
	case j.Status.StartTime == nil:
		return ""
	case j.Status.CompletionTime == nil:
		return duration.HumanDuration(now.Sub(j.Status.StartTime.Time))
	}
	return duration.HumanDuration(j.Status.CompletionTime.Sub(j.Status.StartTime.Time))
}
