package registry

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func replicaSetKind() *Kind {
	return &Kind{
		GVK:           appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
		Resource:      "replicasets",
		Namespaced:    true,
		ShortNames:    []string{"rs"},
		Categories:    []string{"all"},
		HasStatus:     true,
		HasGeneration: true,
		newObject:     func() runtime.Object { return &appsv1.ReplicaSet{} },
		newList:       func() runtime.Object { return &appsv1.ReplicaSetList{} },
		Scale: replicaScale(func(rs *appsv1.ReplicaSet) **int32 { return &rs.Spec.Replicas },
			func(rs *appsv1.ReplicaSet) int32 { return rs.Status.Replicas },
			func(rs *appsv1.ReplicaSet) *metav1.LabelSelector { return rs.Spec.Selector }),
		prepareForCreate: func(obj runtime.Object) {
			obj.(*appsv1.ReplicaSet).Status = appsv1.ReplicaSetStatus{}
		},
		defaults: func(obj runtime.Object) {
			rs := obj.(*appsv1.ReplicaSet)
			defaultInt32(&rs.Spec.Replicas, 1)
			defaultPodSpec(&rs.Spec.Template.Spec)
		},
		validate: func(obj runtime.Object) field.ErrorList {
			rs := obj.(*appsv1.ReplicaSet)
			errs := validateReplicas(rs.Spec.Replicas, field.NewPath("spec", "replicas"))
			return append(errs, validateSelectorAndTemplate(rs.Spec.Selector, &rs.Spec.Template, "replicaset")...)
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateSelectorUpdate(obj.(*appsv1.ReplicaSet).Spec.Selector, old.(*appsv1.ReplicaSet).Spec.Selector)
		},
		fieldNames: []string{"status.replicas"},
		fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.replicas": fmt.Sprint(obj.(*appsv1.ReplicaSet).Status.Replicas)}
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Desired", "integer", "Replicas is the number of desired pods.", 0),
			col("Current", "integer", "Replicas is the most recently observed number of replicas.", 0),
			col("Ready", "integer", "The number of ready replicas for this replica set.", 0),
			ageColumn,
			col("Containers", "string", "Names of each container in the template.", 1),
			col("Images", "string", "Images referenced by each container in the template.", 1),
			col("Selector", "string", "Selector is a label query over pods that should match the replica count.", 1),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			rs := obj.(*appsv1.ReplicaSet)
			desired := int32(0)
			if rs.Spec.Replicas != nil {
				desired = *rs.Spec.Replicas
			}
			names, images := containerNames(rs.Spec.Template.Spec.Containers)
			return []any{rs.Name, int64(desired), int64(rs.Status.Replicas), int64(rs.Status.ReadyReplicas),
				Age(rs.CreationTimestamp, now), names, images, labelSelectorString(rs.Spec.Selector)}
		},
	}
}
