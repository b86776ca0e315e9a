package registry

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func statefulSetKind() *Kind {
	return &Kind{
		GVK:           appsv1.SchemeGroupVersion.WithKind("StatefulSet"),
		Resource:      "statefulsets",
		Namespaced:    true,
		ShortNames:    []string{"sts"},
		Categories:    []string{"all"},
		HasStatus:     true,
		HasGeneration: true,
		newObject:     func() runtime.Object { return &appsv1.StatefulSet{} },
		newList:       func() runtime.Object { return &appsv1.StatefulSetList{} },
		Scale: replicaScale(func(s *appsv1.StatefulSet) **int32 { return &s.Spec.Replicas },
			func(s *appsv1.StatefulSet) int32 { return s.Status.Replicas },
			func(s *appsv1.StatefulSet) *metav1.LabelSelector { return s.Spec.Selector }),
		prepareForCreate: func(obj runtime.Object) {
			obj.(*appsv1.StatefulSet).Status = appsv1.StatefulSetStatus{}
		},
		defaults: func(obj runtime.Object) { defaultStatefulSet(obj.(*appsv1.StatefulSet)) },
		validate: func(obj runtime.Object) field.ErrorList { return validateStatefulSet(obj.(*appsv1.StatefulSet)) },
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateStatefulSetUpdate(obj.(*appsv1.StatefulSet), old.(*appsv1.StatefulSet))
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Ready", "string", "Number of the pod with ready state", 0),
			ageColumn,
			col("Containers", "string", "Names of each container in the template.", 1),
			col("Images", "string", "Images referenced by each container in the template.", 1),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			s := obj.(*appsv1.StatefulSet)
			names, images := containerNames(s.Spec.Template.Spec.Containers)
			return []any{s.Name, fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, replicasOf(s.Spec.Replicas)),
				Age(s.CreationTimestamp, now), names, images}
		},
	}
}

func replicasOf(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

func defaultStatefulSet(s *appsv1.StatefulSet) {
	sp := &s.Spec
	defaultInt32(&sp.Replicas, 1)
	if sp.PodManagementPolicy == "" {
		sp.PodManagementPolicy = appsv1.OrderedReadyPodManagement
	}
	if sp.UpdateStrategy.Type == "" {
		sp.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
	}
	if sp.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType {
		if sp.UpdateStrategy.RollingUpdate == nil {
			sp.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
		}
		defaultInt32(&sp.UpdateStrategy.RollingUpdate.Partition, 0)
	}
	defaultInt32(&sp.RevisionHistoryLimit, 10)
	if sp.PersistentVolumeClaimRetentionPolicy == nil {
		sp.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
	}
	rp := sp.PersistentVolumeClaimRetentionPolicy
	if rp.WhenDeleted == "" {
		rp.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if rp.WhenScaled == "" {
		rp.WhenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	defaultPodSpec(&sp.Template.Spec)
	for i := range sp.VolumeClaimTemplates {
		c := &sp.VolumeClaimTemplates[i]
		if c.Spec.VolumeMode == nil {
			m := corev1.PersistentVolumeFilesystem
			c.Spec.VolumeMode = &m
		}
	}
}

func validateStatefulSet(s *appsv1.StatefulSet) field.ErrorList {
	sp := field.NewPath("spec")
	errs := validateReplicas(s.Spec.Replicas, sp.Child("replicas"))
	// The pods get a volume per claim template: mounts may name them.
	tmpl := s.Spec.Template.DeepCopy()
	for _, c := range s.Spec.VolumeClaimTemplates {
		tmpl.Spec.Volumes = append(tmpl.Spec.Volumes, corev1.Volume{Name: c.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c.Name}}})
	}
	errs = append(errs, validateSelectorAndTemplate(s.Spec.Selector, tmpl, "statefulset")...)
	policies := []string{string(appsv1.OrderedReadyPodManagement), string(appsv1.ParallelPodManagement)}
	if !contains(policies, string(s.Spec.PodManagementPolicy)) {
		errs = append(errs, field.NotSupported(sp.Child("podManagementPolicy"), s.Spec.PodManagementPolicy, policies))
	}
	types := []string{string(appsv1.OnDeleteStatefulSetStrategyType), string(appsv1.RollingUpdateStatefulSetStrategyType)}
	switch s.Spec.UpdateStrategy.Type {
	case appsv1.OnDeleteStatefulSetStrategyType:
		if s.Spec.UpdateStrategy.RollingUpdate != nil {
			errs = append(errs, field.Invalid(sp.Child("updateStrategy", "rollingUpdate"), s.Spec.UpdateStrategy.RollingUpdate,
				fmt.Sprintf("only allowed for updateStrategy '%s'", appsv1.RollingUpdateStatefulSetStrategyType)))
		}
	case appsv1.RollingUpdateStatefulSetStrategyType:
		if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil && *ru.Partition < 0 {
			errs = append(errs, field.Invalid(sp.Child("updateStrategy", "rollingUpdate", "partition"), *ru.Partition, "must be greater than or equal to 0"))
		}
	default:
		errs = append(errs, field.NotSupported(sp.Child("updateStrategy", "type"), s.Spec.UpdateStrategy.Type, types))
	}
	if s.Spec.MinReadySeconds < 0 {
		errs = append(errs, field.Invalid(sp.Child("minReadySeconds"), s.Spec.MinReadySeconds, "must be greater than or equal to 0"))
	}
	for i, c := range s.Spec.VolumeClaimTemplates {
		if c.Name == "" {
			errs = append(errs, field.Required(sp.Child("volumeClaimTemplates").Index(i).Child("metadata", "name"), ""))
		}
		errs = append(errs, validatePVCSpec(&c.Spec, sp.Child("volumeClaimTemplates").Index(i).Child("spec"))...)
	}
	return errs
}

// validateStatefulSetUpdate: only replicas, ordinals, template,
// updateStrategy, revisionHistoryLimit, persistentVolumeClaimRetentionPolicy
// and minReadySeconds may change.
func validateStatefulSetUpdate(s, old *appsv1.StatefulSet) field.ErrorList {
	a, b := s.Spec.DeepCopy(), old.Spec.DeepCopy()
	for _, x := range []*appsv1.StatefulSetSpec{a, b} {
		x.Replicas, x.Ordinals, x.Template, x.UpdateStrategy = nil, nil, corev1.PodTemplateSpec{}, appsv1.StatefulSetUpdateStrategy{}
		x.RevisionHistoryLimit, x.PersistentVolumeClaimRetentionPolicy, x.MinReadySeconds = nil, nil, 0
	}
	if !apiequality.Semantic.DeepEqual(a, b) {
		return field.ErrorList{field.Forbidden(field.NewPath("spec"), "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")}
	}
	return nil
}
