package registry

import (
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func cronJobKind() *Kind {
	return &Kind{
		GVK:           batchv1.SchemeGroupVersion.WithKind("CronJob"),
		Resource:      "cronjobs",
		Namespaced:    true,
		ShortNames:    []string{"cj"},
		Categories:    []string{"all"},
		HasStatus:     true,
		HasGeneration: true,
		// A /status update keeps metadata changes (kube-apiserver resets
		// only the spec).
		statusKeepsMetadata: true,
		NameFn: func(name string, prefix bool) []string {
			// The Job names derived from it add 11 characters.
			msgs := apivalidation.NameIsDNSSubdomain(name, prefix)
			if !prefix && len(name) > 52 {
				msgs = append(msgs, "must be no more than 52 characters")
			}
			return msgs
		},
		newObject: func() runtime.Object { return &batchv1.CronJob{} },
		newList:   func() runtime.Object { return &batchv1.CronJobList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*batchv1.CronJob).Status = batchv1.CronJobStatus{}
		},
		defaults: func(obj runtime.Object) {
			s := &obj.(*batchv1.CronJob).Spec
			if s.ConcurrencyPolicy == "" {
				s.ConcurrencyPolicy = batchv1.AllowConcurrent
			}
			if s.Suspend == nil {
				f := false
				s.Suspend = &f
			}
			defaultInt32(&s.SuccessfulJobsHistoryLimit, 3)
			defaultInt32(&s.FailedJobsHistoryLimit, 1)
			defaultPodSpec(&s.JobTemplate.Spec.Template.Spec)
		},
		validate: func(obj runtime.Object) field.ErrorList { return validateCronJob(obj.(*batchv1.CronJob)) },
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.", 0),
			col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.", 0),
			col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions.", 0),
			col("Active", "integer", "A list of pointers to currently running jobs.", 0),
			col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled.", 0),
			ageColumn,
			col("Containers", "string", "Names of each container in the template.", 1),
			col("Images", "string", "Images referenced by each container in the template.", 1),
			col("Selector", "string", "A label query over pods that should match the pod count.", 1),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			c := obj.(*batchv1.CronJob)
			last := "<none>"
			if c.Status.LastScheduleTime != nil {
				last = Age(*c.Status.LastScheduleTime, now)
			}
			tz := "<none>"
			if c.Spec.TimeZone != nil {
				tz = *c.Spec.TimeZone
			}
			names, images := containerNames(c.Spec.JobTemplate.Spec.Template.Spec.Containers)
			return []any{c.Name, c.Spec.Schedule, tz, c.Spec.Suspend != nil && *c.Spec.Suspend, int64(len(c.Status.Active)),
				last, Age(c.CreationTimestamp, now), names, images, labelSelectorString(c.Spec.JobTemplate.Spec.Selector)}
		},
	}
}

func validateCronJob(c *batchv1.CronJob) field.ErrorList {
	var errs field.ErrorList
	sp := field.NewPath("spec")
	switch {
	case c.Spec.Schedule == "":
		errs = append(errs, field.Required(sp.Child("schedule"), ""))
	case strings.Contains(c.Spec.Schedule, "TZ"):
		errs = append(errs, field.Invalid(sp.Child("schedule"), c.Spec.Schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
	default:
		if msg := checkCronSchedule(c.Spec.Schedule); msg != "" {
			errs = append(errs, field.Invalid(sp.Child("schedule"), c.Spec.Schedule, msg))
		}
	}
	if tz := c.Spec.TimeZone; tz != nil {
		if _, err := time.LoadLocation(*tz); err != nil || strings.EqualFold(*tz, "local") {
			errs = append(errs, field.Invalid(sp.Child("timeZone"), *tz, "unknown time zone "+*tz))
		}
	}
	policies := []string{string(batchv1.AllowConcurrent), string(batchv1.ForbidConcurrent), string(batchv1.ReplaceConcurrent)}
	if !contains(policies, string(c.Spec.ConcurrencyPolicy)) {
		errs = append(errs, field.NotSupported(sp.Child("concurrencyPolicy"), c.Spec.ConcurrencyPolicy, policies))
	}
	if d := c.Spec.StartingDeadlineSeconds; d != nil && *d < 0 {
		errs = append(errs, field.Invalid(sp.Child("startingDeadlineSeconds"), *d, "must be greater than or equal to 0"))
	}
	for name, v := range map[string]*int32{"successfulJobsHistoryLimit": c.Spec.SuccessfulJobsHistoryLimit, "failedJobsHistoryLimit": c.Spec.FailedJobsHistoryLimit} {
		if v != nil && *v < 0 {
			errs = append(errs, field.Invalid(sp.Child(name), *v, "must be greater than or equal to 0"))
		}
	}
	jt := sp.Child("jobTemplate", "spec")
	js := c.Spec.JobTemplate.Spec
	// The Job's selector is generated when the Job is created.
	js.Selector = nil
	js.ManualSelector = nil
	errs = append(errs, validateJobTemplateSpec(&js, jt)...)
	return errs
}

// validateJobTemplateSpec checks a CronJob's job spec like a Job's, minus
// the selector (generated when each Job is created).
func validateJobTemplateSpec(s *batchv1.JobSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, e := range validateJobSpec(s, p) {
		if e.Field == p.Child("selector").String() {
			continue
		}
		errs = append(errs, e)
	}
	return errs
}

// cronDescriptors are the schedule shorthands robfig/cron accepts.
var cronDescriptors = map[string]bool{"@yearly": true, "@annually": true, "@monthly": true, "@weekly": true,
	"@daily": true, "@midnight": true, "@hourly": true}

// checkCronSchedule checks a standard five-field cron schedule (or a
// descriptor) and says what is wrong, "" when it is valid.
func checkCronSchedule(s string) string {
	s = strings.TrimSpace(s)
	if cronDescriptors[s] || strings.HasPrefix(s, "@every ") {
		return ""
	}
	f := strings.Fields(s)
	if len(f) != 5 {
		return fmt.Sprintf("expected exactly 5 fields, found %d: %s", len(f), s)
	}
	bounds := [][2]int{{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 7}}
	names := [][]string{nil, nil, nil,
		{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"},
		{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}}
	for i, part := range f {
		for _, item := range strings.Split(part, ",") {
			if msg := checkCronItem(item, bounds[i], names[i]); msg != "" {
				return msg
			}
		}
	}
	return ""
}

func checkCronItem(item string, b [2]int, names []string) string {
	rng, step, hasStep := strings.Cut(item, "/")
	if hasStep {
		var n int
		if _, err := fmt.Sscanf(step, "%d", &n); err != nil || n <= 0 || fmt.Sprint(n) != step {
			return fmt.Sprintf("failed to parse int from %s", step)
		}
	}
	if rng == "*" || rng == "?" {
		return ""
	}
	lo, hi, isRange := strings.Cut(rng, "-")
	val := func(s string) (int, bool) {
		for i, n := range names {
			if strings.EqualFold(s, n) {
				return i + b[0], true
			}
		}
		var n int
		if _, err := fmt.Sscanf(s, "%d", &n); err != nil || fmt.Sprint(n) != s {
			return 0, false
		}
		return n, true
	}
	l, ok := val(lo)
	if !ok {
		return fmt.Sprintf("failed to parse int from %s", lo)
	}
	h := l
	if isRange {
		if h, ok = val(hi); !ok {
			return fmt.Sprintf("failed to parse int from %s", hi)
		}
	}
	if l < b[0] || h > b[1] || l > h {
		return fmt.Sprintf("end of range (%d) above maximum (%d): %s", h, b[1], item)
	}
	return ""
}
