package admission

import (
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-io/skiff/fsm/state"
)

// runtimeClass is kube-apiserver's RuntimeClass plugin: a new pod naming
// a RuntimeClass must name one that exists; it gets the class's pod
// overhead (a different overhead of its own is refused, as is an overhead
// without a class that defines one) and the class's scheduling node
// selector (a conflicting value is refused) and tolerations.
func (c *Chain) runtimeClass(snap *state.Snapshot, a *Attributes) error {
	pod, ok := a.Object.(*corev1.Pod)
	if !ok {
		return nil
	}
	forbid := func(format string, args ...any) error {
		return apierrors.NewForbidden(a.Kind.GroupResource(), a.Name, fmt.Errorf(format, args...))
	}
	var rc *nodev1.RuntimeClass
	if name := pod.Spec.RuntimeClassName; name != nil && *name != "" {
		kind, ok := c.reg.Lookup(nodev1.GroupName, "v1", "runtimeclasses")
		if !ok {
			return nil
		}
		o := snap.Get(kind.Key("", *name))
		if o == nil {
			return forbid("pod rejected: RuntimeClass %q not found", *name)
		}
		obj, err := kind.Decode(o)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		rc = obj.(*nodev1.RuntimeClass)
	}
	switch {
	case rc != nil && rc.Overhead != nil:
		if len(pod.Spec.Overhead) > 0 && !apiequality.Semantic.DeepEqual(pod.Spec.Overhead, rc.Overhead.PodFixed) {
			return forbid("pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead")
		}
		pod.Spec.Overhead = rc.Overhead.PodFixed.DeepCopy()
	case len(pod.Spec.Overhead) > 0:
		return forbid("pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead")
	}
	if rc == nil || rc.Scheduling == nil {
		return nil
	}
	sel := maps.Clone(pod.Spec.NodeSelector)
	for _, key := range slices.Sorted(maps.Keys(rc.Scheduling.NodeSelector)) {
		want := rc.Scheduling.NodeSelector[key]
		if have, ok := sel[key]; ok && have != want {
			return forbid("conflict: runtimeClass.scheduling.nodeSelector[%s] = %s; pod.spec.nodeSelector[%s] = %s", key, want, key, have)
		}
		if sel == nil {
			sel = map[string]string{}
		}
		sel[key] = want
	}
	pod.Spec.NodeSelector = sel
	for _, t := range rc.Scheduling.Tolerations {
		if !slices.ContainsFunc(pod.Spec.Tolerations, func(p corev1.Toleration) bool { return apiequality.Semantic.DeepEqual(p, t) }) {
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, t)
		}
	}
	return nil
}
