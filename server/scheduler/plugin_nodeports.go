package scheduler

import "context"

// NodePorts rejects nodes where a host port the pod asks for is taken.
type NodePorts struct{}

// ErrReasonNodePorts is kube-scheduler's text for a host port clash.
const ErrReasonNodePorts = "node(s) didn't have free ports for the requested pod ports"

func (NodePorts) Name() string { return "NodePorts" }

func (NodePorts) PreFilter(_ context.Context, _ *CycleState, pod *PodInfo, _ *Snapshot) *Status {
	if len(pod.HostPorts) == 0 {
		return NewStatus(Skip)
	}
	return nil
}

func (NodePorts) Filter(_ context.Context, _ *CycleState, pod *PodInfo, node *NodeInfo) *Status {
	for _, hp := range pod.HostPorts {
		if node.portConflict(hp) {
			return NewStatus(Unschedulable, ErrReasonNodePorts)
		}
	}
	return nil
}
