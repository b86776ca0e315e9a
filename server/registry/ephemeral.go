package registry

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The pods/ephemeralcontainers subresource, as kube-apiserver serves it:
// an update stores the current pod with only spec.ephemeralContainers
// taken from the request; ephemeral containers may be added, never
// changed or removed, and carry no ports, probes, lifecycle hooks or
// resources (the kubelet never restarts them).

// PrepareForEphemeralContainersUpdate returns what an update of
// pods/ephemeralcontainers stores: old with obj's ephemeral containers
// (defaulted as containers are).
func PrepareForEphemeralContainersUpdate(obj, old runtime.Object) runtime.Object {
	out := old.DeepCopyObject().(*corev1.Pod)
	out.Spec.EphemeralContainers = obj.(*corev1.Pod).DeepCopy().Spec.EphemeralContainers
	defaultEphemeralContainers(&out.Spec)
	// A changed spec is a new generation, as for any pod update
	// (kube-apiserver 1.34's pod observed-generation tracking).
	if !fieldEqual(out, old, "Spec") {
		out.Generation = old.(*corev1.Pod).Generation + 1
	}
	return out
}

func defaultEphemeralContainers(s *corev1.PodSpec) {
	for i := range s.EphemeralContainers {
		defaultContainer((*corev1.Container)(&s.EphemeralContainers[i].EphemeralContainerCommon))
	}
}

// ValidateEphemeralContainersUpdate checks an update of
// pods/ephemeralcontainers (obj as PrepareForEphemeralContainersUpdate
// made it) against the stored pod.
func ValidateEphemeralContainersUpdate(obj, old runtime.Object) field.ErrorList {
	pod, oldPod := obj.(*corev1.Pod), old.(*corev1.Pod)
	p := field.NewPath("spec", "ephemeralContainers")
	errs := validateEphemeralContainers(&pod.Spec, p)
	byName := map[string]*corev1.EphemeralContainer{}
	for i := range pod.Spec.EphemeralContainers {
		byName[pod.Spec.EphemeralContainers[i].Name] = &pod.Spec.EphemeralContainers[i]
	}
	for i, oc := range oldPod.Spec.EphemeralContainers {
		nc, ok := byName[oc.Name]
		switch {
		case !ok:
			errs = append(errs, field.Forbidden(p, fmt.Sprintf("existing ephemeral containers %q may not be removed", oc.Name)))
		case !apiequality.Semantic.DeepEqual(oc, *nc):
			errs = append(errs, field.Forbidden(p.Index(i), fmt.Sprintf("existing ephemeral containers %q may not be changed", oc.Name)))
		}
	}
	return errs
}

// validateEphemeralContainers checks each ephemeral container of s: a
// unique name among all the pod's containers, an image, a target that is
// one of the pod's containers, volume mounts of the pod's volumes, and
// none of the fields an ephemeral container may not have.
func validateEphemeralContainers(s *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	vols := map[string]bool{}
	for _, v := range s.Volumes {
		vols[v.Name] = true
	}
	others := map[string]bool{}
	for _, c := range s.InitContainers {
		others[c.Name] = true
	}
	for _, c := range s.Containers {
		others[c.Name] = true
	}
	names := map[string]bool{}
	for k := range others {
		names[k] = true
	}
	for i := range s.EphemeralContainers {
		ec := &s.EphemeralContainers[i]
		cp := p.Index(i)
		c := (*corev1.Container)(&ec.EphemeralContainerCommon)
		errs = append(errs, validateContainer(c, cp, names, vols)...)
		if ec.TargetContainerName != "" && !others[ec.TargetContainerName] {
			errs = append(errs, field.NotFound(cp.Child("targetContainerName"), ec.TargetContainerName))
		}
		forbid := func(set bool, name string) {
			if set {
				errs = append(errs, field.Forbidden(cp.Child(name), "cannot be set for an Ephemeral Container"))
			}
		}
		forbid(len(c.Ports) > 0, "ports")
		forbid(c.LivenessProbe != nil, "livenessProbe")
		forbid(c.ReadinessProbe != nil, "readinessProbe")
		forbid(c.StartupProbe != nil, "startupProbe")
		forbid(c.Lifecycle != nil, "lifecycle")
		forbid(len(c.Resources.Limits) > 0 || len(c.Resources.Requests) > 0 || len(c.Resources.Claims) > 0, "resources")
		forbid(len(c.ResizePolicy) > 0, "resizePolicy")
		forbid(c.RestartPolicy != nil, "restartPolicy")
		for j, m := range c.VolumeMounts {
			if m.SubPath != "" || m.SubPathExpr != "" {
				errs = append(errs, field.Forbidden(cp.Child("volumeMounts").Index(j).Child("subPath"), "cannot be set for an Ephemeral Container"))
			}
		}
	}
	return errs
}
