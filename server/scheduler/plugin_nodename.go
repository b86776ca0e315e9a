package scheduler

import "context"

// NodeName rejects every node but the one the pod names in spec.nodeName
// (it matters for preemption simulations; the queue only holds pods
// without a node).
type NodeName struct{}

// ErrReasonNodeName is kube-scheduler's text for a node of another name.
const ErrReasonNodeName = "node(s) didn't match the requested node name"

func (NodeName) Name() string { return "NodeName" }

func (NodeName) Filter(_ context.Context, _ *CycleState, pod *PodInfo, node *NodeInfo) *Status {
	if want := pod.Pod.Spec.NodeName; want != "" && node.Name() != want {
		return NewStatus(UnschedulableAndUnresolvable, ErrReasonNodeName)
	}
	return nil
}
