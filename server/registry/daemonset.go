package registry

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func daemonSetKind() *Kind {
	return &Kind{
		GVK:           appsv1.SchemeGroupVersion.WithKind("DaemonSet"),
		Resource:      "daemonsets",
		Namespaced:    true,
		ShortNames:    []string{"ds"},
		Categories:    []string{"all"},
		HasStatus:     true,
		HasGeneration: true,
		newObject:     func() runtime.Object { return &appsv1.DaemonSet{} },
		newList:       func() runtime.Object { return &appsv1.DaemonSetList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*appsv1.DaemonSet).Status = appsv1.DaemonSetStatus{}
		},
		defaults: func(obj runtime.Object) { defaultDaemonSet(obj.(*appsv1.DaemonSet)) },
		validate: func(obj runtime.Object) field.ErrorList { return validateDaemonSet(obj.(*appsv1.DaemonSet)) },
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateSelectorUpdate(obj.(*appsv1.DaemonSet).Spec.Selector, old.(*appsv1.DaemonSet).Spec.Selector)
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).", 0),
			col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.", 0),
			col("Ready", "integer", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.", 0),
			col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod", 0),
			col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)", 0),
			col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node.", 0),
			ageColumn,
			col("Containers", "string", "Names of each container in the template.", 1),
			col("Images", "string", "Images referenced by each container in the template.", 1),
			col("Selector", "string", "A label query over pods that are managed by the daemon set.", 1),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			d := obj.(*appsv1.DaemonSet)
			names, images := containerNames(d.Spec.Template.Spec.Containers)
			st := d.Status
			return []any{d.Name, int64(st.DesiredNumberScheduled), int64(st.CurrentNumberScheduled), int64(st.NumberReady),
				int64(st.UpdatedNumberScheduled), int64(st.NumberAvailable), selectorString(d.Spec.Template.Spec.NodeSelector),
				Age(d.CreationTimestamp, now), names, images, labelSelectorString(d.Spec.Selector)}
		},
	}
}

func defaultDaemonSet(d *appsv1.DaemonSet) {
	s := &d.Spec
	if s.UpdateStrategy.Type == "" {
		s.UpdateStrategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	if s.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		if s.UpdateStrategy.RollingUpdate == nil {
			s.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
		}
		ru := s.UpdateStrategy.RollingUpdate
		if ru.MaxUnavailable == nil {
			one := intstr.FromInt32(1)
			ru.MaxUnavailable = &one
		}
		if ru.MaxSurge == nil {
			zero := intstr.FromInt32(0)
			ru.MaxSurge = &zero
		}
	}
	defaultInt32(&s.RevisionHistoryLimit, 10)
	defaultPodSpec(&s.Template.Spec)
}

func validateDaemonSet(d *appsv1.DaemonSet) field.ErrorList {
	sp := field.NewPath("spec")
	errs := validateSelectorAndTemplate(d.Spec.Selector, &d.Spec.Template, "daemonset")
	types := []string{string(appsv1.OnDeleteDaemonSetStrategyType), string(appsv1.RollingUpdateDaemonSetStrategyType)}
	switch d.Spec.UpdateStrategy.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
	case appsv1.RollingUpdateDaemonSetStrategyType:
		if ru := d.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxSurge != nil && ru.MaxUnavailable != nil &&
			isZero(*ru.MaxSurge) && isZero(*ru.MaxUnavailable) {
			errs = append(errs, field.Invalid(sp.Child("updateStrategy", "rollingUpdate", "maxUnavailable"), ru.MaxUnavailable.String(),
				"may not be 0 when `maxSurge` is 0"))
		}
	default:
		errs = append(errs, field.NotSupported(sp.Child("updateStrategy", "type"), d.Spec.UpdateStrategy.Type, types))
	}
	if d.Spec.MinReadySeconds < 0 {
		errs = append(errs, field.Invalid(sp.Child("minReadySeconds"), d.Spec.MinReadySeconds, "must be greater than or equal to 0"))
	}
	return errs
}
