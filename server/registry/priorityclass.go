package registry

import (
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Priority class limits, as Kubernetes sets them.
const (
	// highestUserDefinablePriority is the largest value a class outside
	// the system- prefix may have.
	highestUserDefinablePriority = 1000000000
	systemPriorityClassPrefix    = "system-"
)

// systemPriorityClasses are the reserved classes and their fixed values.
var systemPriorityClasses = map[string]int32{
	"system-cluster-critical": 2000000000,
	"system-node-critical":    2000001000,
}

// PriorityClasses (scheduling.k8s.io/v1) name pod priorities; the
// scheduler resolves a pod's priorityClassName to the class's value and
// preempts lower-priority pods.
func priorityClassKind() *Kind {
	return &Kind{
		GVK:        schedulingv1.SchemeGroupVersion.WithKind("PriorityClass"),
		Resource:   "priorityclasses",
		ShortNames: []string{"pc"},
		newObject:  func() runtime.Object { return &schedulingv1.PriorityClass{} },
		newList:    func() runtime.Object { return &schedulingv1.PriorityClassList{} },
		defaults: func(obj runtime.Object) {
			pc := obj.(*schedulingv1.PriorityClass)
			if pc.PreemptionPolicy == nil {
				p := corev1.PreemptLowerPriority
				pc.PreemptionPolicy = &p
			}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			pc := obj.(*schedulingv1.PriorityClass)
			var errs field.ErrorList
			if strings.HasPrefix(pc.Name, systemPriorityClassPrefix) {
				if v, ok := systemPriorityClasses[pc.Name]; !ok || v != pc.Value || pc.GlobalDefault {
					errs = append(errs, field.Forbidden(field.NewPath("metadata", "name"),
						"priority class names with '"+systemPriorityClassPrefix+"' prefix are reserved for system use only"))
				}
			} else if pc.Value > highestUserDefinablePriority {
				errs = append(errs, field.Forbidden(field.NewPath("value"),
					"maximum allowed value of a user defined priority is "+strconv.Itoa(highestUserDefinablePriority)))
			}
			if p := pc.PreemptionPolicy; p != nil && *p != corev1.PreemptLowerPriority && *p != corev1.PreemptNever {
				errs = append(errs, field.NotSupported(field.NewPath("preemptionPolicy"), *p,
					[]string{string(corev1.PreemptLowerPriority), string(corev1.PreemptNever)}))
			}
			return errs
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			pc, prev := obj.(*schedulingv1.PriorityClass), old.(*schedulingv1.PriorityClass)
			var errs field.ErrorList
			if pc.Value != prev.Value {
				errs = append(errs, field.Forbidden(field.NewPath("value"), "may not be changed in an update."))
			}
			if pc.PreemptionPolicy != nil && prev.PreemptionPolicy != nil && *pc.PreemptionPolicy != *prev.PreemptionPolicy {
				errs = append(errs, field.Invalid(field.NewPath("preemptionPolicy"), *pc.PreemptionPolicy, "field is immutable"))
			}
			return errs
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Value", "integer", "value represents the integer value of this priority class.", 0),
			col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.", 0),
			ageColumn,
			col("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority.", 0),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			pc := obj.(*schedulingv1.PriorityClass)
			policy := string(corev1.PreemptLowerPriority)
			if pc.PreemptionPolicy != nil {
				policy = string(*pc.PreemptionPolicy)
			}
			return []any{pc.Name, int64(pc.Value), pc.GlobalDefault, Age(pc.CreationTimestamp, now), policy}
		},
	}
}
