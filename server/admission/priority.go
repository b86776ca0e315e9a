package admission

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-io/skiff/fsm/state"
)

// priority is kube-apiserver's Priority plugin: a new pod gets
// spec.priority (and its preemptionPolicy) from its priorityClassName, or
// from the globalDefault class when it names none; an unknown class is
// refused (403), as is a spec.priority that disagrees with the class.
func (c *Chain) priority(snap *state.Snapshot, a *Attributes) error {
	pod, ok := a.Object.(*corev1.Pod)
	if !ok {
		return nil
	}
	kind, ok := c.reg.Lookup(schedulingv1.GroupName, "v1", "priorityclasses")
	if !ok {
		return nil
	}
	var (
		found *schedulingv1.PriorityClass
		def   *schedulingv1.PriorityClass
		derr  error
	)
	if name := pod.Spec.PriorityClassName; name != "" {
		if o := snap.Get(kind.Key("", name)); o != nil {
			obj, err := kind.Decode(o)
			if err != nil {
				return apierrors.NewInternalError(err)
			}
			found = obj.(*schedulingv1.PriorityClass)
		}
		if found == nil {
			return apierrors.NewForbidden(a.Kind.GroupResource(), a.Name, fmt.Errorf("no PriorityClass with name %s was found", name))
		}
	} else {
		snap.List(kind.StorageResource(), "", "", func(o *state.Object) bool {
			obj, err := kind.Decode(o)
			if err != nil {
				derr = err
				return false
			}
			pc := obj.(*schedulingv1.PriorityClass)
			if pc.GlobalDefault && (def == nil || pc.Value < def.Value) {
				def = pc
			}
			return true
		})
		if derr != nil {
			return apierrors.NewInternalError(derr)
		}
		found = def
	}
	value := int32(0)
	if found != nil {
		value = found.Value
	}
	if pod.Spec.Priority != nil && *pod.Spec.Priority != value {
		return apierrors.NewForbidden(a.Kind.GroupResource(), a.Name, fmt.Errorf(
			"the integer value of priority (%d) must not be provided in pod spec; priority admission controller computed %d from the given PriorityClass name",
			*pod.Spec.Priority, value))
	}
	pod.Spec.Priority = &value
	if found != nil {
		pod.Spec.PriorityClassName = found.Name
		if pod.Spec.PreemptionPolicy == nil && found.PreemptionPolicy != nil {
			p := *found.PreemptionPolicy
			pod.Spec.PreemptionPolicy = &p
		}
	}
	return nil
}
