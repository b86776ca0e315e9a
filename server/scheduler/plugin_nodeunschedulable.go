package scheduler

import (
	"context"

	corev1 "k8s.io/api/core/v1"
)

// NodeUnschedulable rejects cordoned nodes (spec.unschedulable) unless the
// pod tolerates the node.kubernetes.io/unschedulable:NoSchedule taint.
type NodeUnschedulable struct{}

// ErrReasonUnschedulable is kube-scheduler's text for a cordoned node.
const ErrReasonUnschedulable = "node(s) were unschedulable"

func (NodeUnschedulable) Name() string { return "NodeUnschedulable" }

func (NodeUnschedulable) Filter(_ context.Context, _ *CycleState, pod *PodInfo, node *NodeInfo) *Status {
	n := node.Node()
	if n == nil || !n.Spec.Unschedulable {
		return nil
	}
	taint := corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}
	if tolerationsTolerateTaint(pod.Pod.Spec.Tolerations, &taint) {
		return nil
	}
	return NewStatus(UnschedulableAndUnresolvable, ErrReasonUnschedulable)
}
