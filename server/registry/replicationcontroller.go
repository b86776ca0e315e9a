package registry

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ReplicationControllers are the core/v1 predecessor of ReplicaSets: an
// equality-based selector (a map) and a template pointer.
func replicationControllerKind() *Kind {
	return &Kind{
		GVK:           corev1.SchemeGroupVersion.WithKind("ReplicationController"),
		Resource:      "replicationcontrollers",
		Namespaced:    true,
		ShortNames:    []string{"rc"},
		Categories:    []string{"all"},
		HasStatus:     true,
		HasGeneration: true,
		newObject:     func() runtime.Object { return &corev1.ReplicationController{} },
		newList:       func() runtime.Object { return &corev1.ReplicationControllerList{} },
		Scale: &ScaleRules{
			Get: func(obj runtime.Object) (int32, int32, string) {
				rc := obj.(*corev1.ReplicationController)
				var n int32
				if rc.Spec.Replicas != nil {
					n = *rc.Spec.Replicas
				}
				return n, rc.Status.Replicas, labels.SelectorFromSet(rc.Spec.Selector).String()
			},
			Set: func(obj runtime.Object, replicas int32) {
				obj.(*corev1.ReplicationController).Spec.Replicas = &replicas
			},
			SpecReplicasPath: []string{"spec", "replicas"},
		},
		prepareForCreate: func(obj runtime.Object) {
			obj.(*corev1.ReplicationController).Status = corev1.ReplicationControllerStatus{}
		},
		defaults: func(obj runtime.Object) { defaultReplicationController(obj.(*corev1.ReplicationController)) },
		validate: func(obj runtime.Object) field.ErrorList {
			return validateReplicationController(obj.(*corev1.ReplicationController))
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Desired", "integer", "Replicas is the number of desired replicas.", 0),
			col("Current", "integer", "Replicas is the most recently observed number of replicas.", 0),
			col("Ready", "integer", "The number of ready replicas for this replication controller.", 0),
			ageColumn,
			col("Containers", "string", "Names of each container in the template.", 1),
			col("Images", "string", "Images referenced by each container in the template.", 1),
			col("Selector", "string", "Selector is a label query over pods that should match the Replicas count.", 1),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			rc := obj.(*corev1.ReplicationController)
			desired := int32(0)
			if rc.Spec.Replicas != nil {
				desired = *rc.Spec.Replicas
			}
			var names, images string
			if rc.Spec.Template != nil {
				names, images = containerNames(rc.Spec.Template.Spec.Containers)
			}
			return []any{rc.Name, int64(desired), int64(rc.Status.Replicas), int64(rc.Status.ReadyReplicas),
				Age(rc.CreationTimestamp, now), names, images, labels.SelectorFromSet(rc.Spec.Selector).String()}
		},
	}
}

// defaultReplicationController: as Kubernetes, an empty selector (and
// empty labels) default to the template's labels.
func defaultReplicationController(rc *corev1.ReplicationController) {
	defaultInt32(&rc.Spec.Replicas, 1)
	if t := rc.Spec.Template; t != nil {
		if len(rc.Spec.Selector) == 0 && len(t.Labels) > 0 {
			rc.Spec.Selector = map[string]string{}
			for k, v := range t.Labels {
				rc.Spec.Selector[k] = v
			}
		}
		if len(rc.Labels) == 0 && len(t.Labels) > 0 {
			rc.Labels = map[string]string{}
			for k, v := range t.Labels {
				rc.Labels[k] = v
			}
		}
		defaultPodSpec(&t.Spec)
	}
}

func validateReplicationController(rc *corev1.ReplicationController) field.ErrorList {
	sp := field.NewPath("spec")
	errs := validateReplicas(rc.Spec.Replicas, sp.Child("replicas"))
	if len(rc.Spec.Selector) == 0 {
		errs = append(errs, field.Required(sp.Child("selector"), ""))
	}
	if rc.Spec.Template == nil {
		return append(errs, field.Required(sp.Child("template"), ""))
	}
	sel := &metav1.LabelSelector{MatchLabels: rc.Spec.Selector}
	if len(rc.Spec.Selector) == 0 {
		sel = nil
	}
	tmplErrs := validateSelectorAndTemplate(sel, rc.Spec.Template, "replicationcontroller")
	for _, e := range tmplErrs {
		if e.Type == field.ErrorTypeRequired && e.Field == "spec.selector" {
			continue // reported above
		}
		errs = append(errs, e)
	}
	return errs
}
