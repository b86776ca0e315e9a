package scheduler

import (
	"context"
	"math"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// NodeResourcesFit rejects nodes whose allocatable resources, minus what
// the pods on them request, cannot hold the pod's requests, or that hold
// their maximum number of pods.
type NodeResourcesFit struct{}

// Reasons as kube-scheduler words them.
const (
	ErrReasonTooManyPods = "Too many pods"
	insufficientPrefix   = "Insufficient "
)

func (NodeResourcesFit) Name() string { return "NodeResourcesFit" }

func (NodeResourcesFit) Filter(_ context.Context, _ *CycleState, pod *PodInfo, node *NodeInfo) *Status {
	reasons, unresolvable := insufficientResources(pod, node)
	if len(reasons) == 0 {
		return nil
	}
	code := Unschedulable
	if unresolvable {
		code = UnschedulableAndUnresolvable
	}
	return NewStatus(code, reasons...)
}

// insufficientResources lists what the node lacks for pod;
// unresolvable is set when a request is larger than the node's whole
// allocatable amount, which no preemption can fix.
func insufficientResources(pod *PodInfo, node *NodeInfo) (reasons []string, unresolvable bool) {
	alloc, used, req := &node.Allocatable, &node.Requested, &pod.Requests
	if int64(len(node.Pods))+1 > alloc.AllowedPodNumber {
		reasons = append(reasons, ErrReasonTooManyPods)
	}
	check := func(name string, want, have, allocatable int64) {
		if want > 0 && want > allocatable-have {
			reasons = append(reasons, insufficientPrefix+name)
			if want > allocatable {
				unresolvable = true
			}
		}
	}
	check(string(corev1.ResourceCPU), req.MilliCPU, used.MilliCPU, alloc.MilliCPU)
	check(string(corev1.ResourceMemory), req.Memory, used.Memory, alloc.Memory)
	check(string(corev1.ResourceEphemeralStorage), req.EphemeralStorage, used.EphemeralStorage, alloc.EphemeralStorage)
	if len(req.Scalar) > 0 {
		names := make([]string, 0, len(req.Scalar))
		for k := range req.Scalar {
			names = append(names, string(k))
		}
		sort.Strings(names)
		for _, k := range names {
			rn := corev1.ResourceName(k)
			check(k, req.Scalar[rn], used.Scalar[rn], alloc.Scalar[rn])
		}
	}
	return reasons, unresolvable
}

// NodeResourcesLeastAllocated scores nodes by the share of CPU and memory
// left free once the pod is placed (kube-scheduler's NodeResourcesFit
// scoring with the LeastAllocated strategy, CPU and memory weighing 1).
type NodeResourcesLeastAllocated struct{}

func (NodeResourcesLeastAllocated) Name() string { return "NodeResourcesLeastAllocated" }

func (NodeResourcesLeastAllocated) Score(_ context.Context, _ *CycleState, pod *PodInfo, node *NodeInfo) (int64, *Status) {
	cpu := leastRequested(node.NonZeroRequested.MilliCPU+pod.NonZeroCPU, node.Allocatable.MilliCPU)
	mem := leastRequested(node.NonZeroRequested.Memory+pod.NonZeroMemory, node.Allocatable.Memory)
	return (cpu + mem) / 2, nil
}

func leastRequested(requested, capacity int64) int64 {
	if capacity == 0 || requested > capacity {
		return 0
	}
	return (capacity - requested) * MaxNodeScore / capacity
}

// NodeResourcesBalancedAllocation favours nodes whose CPU and memory
// would be used in the same proportion once the pod is placed.
type NodeResourcesBalancedAllocation struct{}

func (NodeResourcesBalancedAllocation) Name() string { return "NodeResourcesBalancedAllocation" }

func (NodeResourcesBalancedAllocation) PreScore(_ context.Context, _ *CycleState, pod *PodInfo, _ []*NodeInfo, _ *Snapshot) *Status {
	if pod.Requests.MilliCPU == 0 && pod.Requests.Memory == 0 {
		return NewStatus(Skip) // best effort: nothing to balance
	}
	return nil
}

func (NodeResourcesBalancedAllocation) Score(_ context.Context, _ *CycleState, pod *PodInfo, node *NodeInfo) (int64, *Status) {
	frac := func(req, capacity int64) float64 {
		if capacity == 0 {
			return 1
		}
		return math.Min(float64(req)/float64(capacity), 1)
	}
	cpu := frac(node.Requested.MilliCPU+pod.Requests.MilliCPU, node.Allocatable.MilliCPU)
	mem := frac(node.Requested.Memory+pod.Requests.Memory, node.Allocatable.Memory)
	std := math.Abs(cpu-mem) / 2
	return int64((1 - std) * float64(MaxNodeScore)), nil
}
