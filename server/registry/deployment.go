package registry

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func deploymentKind() *Kind {
	return &Kind{
		GVK:           appsv1.SchemeGroupVersion.WithKind("Deployment"),
		Resource:      "deployments",
		Namespaced:    true,
		ShortNames:    []string{"deploy"},
		Categories:    []string{"all"},
		HasStatus:     true,
		HasGeneration: true,
		newObject:     func() runtime.Object { return &appsv1.Deployment{} },
		newList:       func() runtime.Object { return &appsv1.DeploymentList{} },
		Scale: replicaScale(func(d *appsv1.Deployment) **int32 { return &d.Spec.Replicas },
			func(d *appsv1.Deployment) int32 { return d.Status.Replicas },
			func(d *appsv1.Deployment) *metav1.LabelSelector { return d.Spec.Selector }),
		prepareForCreate: func(obj runtime.Object) {
			obj.(*appsv1.Deployment).Status = appsv1.DeploymentStatus{}
		},
		defaults: func(obj runtime.Object) { defaultDeployment(obj.(*appsv1.Deployment)) },
		validate: func(obj runtime.Object) field.ErrorList { return validateDeployment(obj.(*appsv1.Deployment)) },
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateSelectorUpdate(obj.(*appsv1.Deployment).Spec.Selector, old.(*appsv1.Deployment).Spec.Selector)
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Ready", "string", "Number of the pod with ready state", 0),
			col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec.", 0),
			col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.", 0),
			ageColumn,
			col("Containers", "string", "Names of each container in the template.", 1),
			col("Images", "string", "Images referenced by each container in the template.", 1),
			col("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.", 1),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			d := obj.(*appsv1.Deployment)
			desired := int32(0)
			if d.Spec.Replicas != nil {
				desired = *d.Spec.Replicas
			}
			names, images := containerNames(d.Spec.Template.Spec.Containers)
			return []any{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, desired), int64(d.Status.UpdatedReplicas),
				int64(d.Status.AvailableReplicas), Age(d.CreationTimestamp, now), names, images, labelSelectorString(d.Spec.Selector)}
		},
	}
}

func defaultDeployment(d *appsv1.Deployment) {
	s := &d.Spec
	defaultInt32(&s.Replicas, 1)
	if s.Strategy.Type == "" {
		s.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if s.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if s.Strategy.RollingUpdate == nil {
			s.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		quarter := intstr.FromString("25%")
		if s.Strategy.RollingUpdate.MaxUnavailable == nil {
			s.Strategy.RollingUpdate.MaxUnavailable = &quarter
		}
		if s.Strategy.RollingUpdate.MaxSurge == nil {
			surge := quarter
			s.Strategy.RollingUpdate.MaxSurge = &surge
		}
	}
	defaultInt32(&s.RevisionHistoryLimit, 10)
	defaultInt32(&s.ProgressDeadlineSeconds, 600)
	defaultPodSpec(&s.Template.Spec)
}

func validateDeployment(d *appsv1.Deployment) field.ErrorList {
	sp := field.NewPath("spec")
	errs := validateReplicas(d.Spec.Replicas, sp.Child("replicas"))
	errs = append(errs, validateSelectorAndTemplate(d.Spec.Selector, &d.Spec.Template, "deployment")...)
	st := d.Spec.Strategy
	types := []string{string(appsv1.RecreateDeploymentStrategyType), string(appsv1.RollingUpdateDeploymentStrategyType)}
	switch st.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if st.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(sp.Child("strategy", "rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		if ru := st.RollingUpdate; ru != nil && ru.MaxSurge != nil && ru.MaxUnavailable != nil &&
			isZero(*ru.MaxSurge) && isZero(*ru.MaxUnavailable) {
			errs = append(errs, field.Invalid(sp.Child("strategy", "rollingUpdate", "maxUnavailable"), ru.MaxUnavailable.String(),
				"may not be 0 when `maxSurge` is 0"))
		}
	default:
		errs = append(errs, field.NotSupported(sp.Child("strategy", "type"), st.Type, types))
	}
	if d.Spec.ProgressDeadlineSeconds != nil && *d.Spec.ProgressDeadlineSeconds <= d.Spec.MinReadySeconds {
		errs = append(errs, field.Invalid(sp.Child("progressDeadlineSeconds"), *d.Spec.ProgressDeadlineSeconds,
			"must be greater than minReadySeconds"))
	}
	return errs
}

func isZero(v intstr.IntOrString) bool {
	if v.Type == intstr.Int {
		return v.IntVal == 0
	}
	return v.StrVal == "0%" || v.StrVal == "0"
}
