package scheduler

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Defaults kube-scheduler assumes for containers that request no CPU or
// memory, when it scores (never when it filters): 0.1 core and 200 MiB.
const (
	defaultMilliCPURequest int64 = 100
	defaultMemoryRequest   int64 = 200 << 20
)

// Resource is an amount of the resources the scheduler accounts for.
type Resource struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	// AllowedPodNumber is the node's pods capacity (allocatable only).
	AllowedPodNumber int64
	// Scalar holds extended resources, hugepages and the like.
	Scalar map[corev1.ResourceName]int64
}

// NewResource converts a ResourceList.
func NewResource(rl corev1.ResourceList) Resource {
	var r Resource
	r.Add(rl)
	return r
}

// Add adds a ResourceList.
func (r *Resource) Add(rl corev1.ResourceList) {
	for name, q := range rl {
		switch name {
		case corev1.ResourceCPU:
			r.MilliCPU += q.MilliValue()
		case corev1.ResourceMemory:
			r.Memory += q.Value()
		case corev1.ResourceEphemeralStorage:
			r.EphemeralStorage += q.Value()
		case corev1.ResourcePods:
			r.AllowedPodNumber += q.Value()
		default:
			if isScalarResource(name) {
				r.addScalar(name, q.Value())
			}
		}
	}
}

func (r *Resource) addScalar(name corev1.ResourceName, v int64) {
	if r.Scalar == nil {
		r.Scalar = map[corev1.ResourceName]int64{}
	}
	r.Scalar[name] += v
}

// AddResource adds o (times sign, +1 or -1).
func (r *Resource) AddResource(o *Resource, sign int64) {
	r.MilliCPU += sign * o.MilliCPU
	r.Memory += sign * o.Memory
	r.EphemeralStorage += sign * o.EphemeralStorage
	for k, v := range o.Scalar {
		r.addScalar(k, sign*v)
	}
}

// maxWith sets each amount to the larger of r's and o's.
func (r *Resource) maxWith(o *Resource) {
	r.MilliCPU = max(r.MilliCPU, o.MilliCPU)
	r.Memory = max(r.Memory, o.Memory)
	r.EphemeralStorage = max(r.EphemeralStorage, o.EphemeralStorage)
	for k, v := range o.Scalar {
		if v > r.Scalar[k] {
			r.addScalar(k, v-r.Scalar[k])
		}
	}
}

// Clone copies r.
func (r Resource) Clone() Resource {
	out := r
	if r.Scalar != nil {
		out.Scalar = make(map[corev1.ResourceName]int64, len(r.Scalar))
		for k, v := range r.Scalar {
			out.Scalar[k] = v
		}
	}
	return out
}

// isScalarResource: extended resources (a domain-prefixed name outside
// kubernetes.io), hugepages-*, and attachable volume limits.
func isScalarResource(name corev1.ResourceName) bool {
	n := string(name)
	if strings.HasPrefix(n, corev1.ResourceHugePagesPrefix) || strings.HasPrefix(n, corev1.ResourceAttachableVolumesPrefix) {
		return true
	}
	// Extended: "domain/name", not in the kubernetes.io domain, and not a
	// quota name (requests.*).
	domain, _, ok := strings.Cut(n, "/")
	if !ok || domain == "" || domain == "kubernetes.io" || strings.HasSuffix(domain, ".kubernetes.io") {
		return false
	}
	return !strings.HasPrefix(n, "requests.")
}

// podRequests is what a pod asks of a node: the larger of its regular
// containers' sum and its init containers' peak (restartable "sidecar"
// init containers keep running, so they add to both), plus the pod
// overhead. kube-scheduler computes it the same way.
func podRequests(pod *corev1.Pod) Resource {
	var regular Resource
	for i := range pod.Spec.Containers {
		regular.Add(pod.Spec.Containers[i].Resources.Requests)
	}
	var sidecars, initPeak Resource
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if isRestartable(c) {
			sidecars.Add(c.Resources.Requests)
			cur := sidecars.Clone()
			initPeak.maxWith(&cur)
			continue
		}
		cur := sidecars.Clone()
		cur.Add(c.Resources.Requests)
		initPeak.maxWith(&cur)
	}
	regular.AddResource(&sidecars, 1)
	regular.maxWith(&initPeak)
	if pod.Spec.Overhead != nil {
		regular.Add(pod.Spec.Overhead)
	}
	return regular
}

func isRestartable(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// podNonZeroRequests is the CPU and memory the scoring plugins count for a
// pod: containers that request nothing count as the defaults.
func podNonZeroRequests(pod *corev1.Pod) (milliCPU, memory int64) {
	nz := func(rl corev1.ResourceList) (int64, int64) {
		c, m := defaultMilliCPURequest, defaultMemoryRequest
		if q, ok := rl[corev1.ResourceCPU]; ok {
			c = q.MilliValue()
		}
		if q, ok := rl[corev1.ResourceMemory]; ok {
			m = q.Value()
		}
		return c, m
	}
	for i := range pod.Spec.Containers {
		c, m := nz(pod.Spec.Containers[i].Resources.Requests)
		milliCPU += c
		memory += m
	}
	var sideC, sideM, peakC, peakM int64
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		c, m := nz(ic.Resources.Requests)
		if isRestartable(ic) {
			sideC += c
			sideM += m
			peakC, peakM = max(peakC, sideC), max(peakM, sideM)
			continue
		}
		peakC, peakM = max(peakC, sideC+c), max(peakM, sideM+m)
	}
	milliCPU, memory = max(milliCPU+sideC, peakC), max(memory+sideM, peakM)
	if pod.Spec.Overhead != nil {
		if q, ok := pod.Spec.Overhead[corev1.ResourceCPU]; ok {
			milliCPU += q.MilliValue()
		}
		if q, ok := pod.Spec.Overhead[corev1.ResourceMemory]; ok {
			memory += q.Value()
		}
	}
	return milliCPU, memory
}
