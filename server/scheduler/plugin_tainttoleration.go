package scheduler

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// TaintToleration rejects nodes with a NoSchedule or NoExecute taint the
// pod does not tolerate, and scores nodes by how few PreferNoSchedule
// taints the pod does not tolerate.
type TaintToleration struct{}

func (TaintToleration) Name() string { return "TaintToleration" }

func (TaintToleration) Filter(_ context.Context, _ *CycleState, pod *PodInfo, node *NodeInfo) *Status {
	n := node.Node()
	if n == nil {
		return AsStatus(fmt.Errorf("node not found"))
	}
	for i := range n.Spec.Taints {
		t := &n.Spec.Taints[i]
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !tolerationsTolerateTaint(pod.Pod.Spec.Tolerations, t) {
			return NewStatus(UnschedulableAndUnresolvable, fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.Key, t.Value))
		}
	}
	return nil
}

const taintTolerationKey = "TaintToleration"

// preferNoScheduleTolerations is the PreScore state: the pod's
// tolerations that can match PreferNoSchedule taints.
type preferNoScheduleTolerations []corev1.Toleration

func (p preferNoScheduleTolerations) Clone() StateData { return p }

func (TaintToleration) PreScore(_ context.Context, state *CycleState, pod *PodInfo, _ []*NodeInfo, _ *Snapshot) *Status {
	var tols preferNoScheduleTolerations
	for _, t := range pod.Pod.Spec.Tolerations {
		if t.Effect == "" || t.Effect == corev1.TaintEffectPreferNoSchedule {
			tols = append(tols, t)
		}
	}
	state.Write(taintTolerationKey, tols)
	return nil
}

func (TaintToleration) Score(_ context.Context, state *CycleState, _ *PodInfo, node *NodeInfo) (int64, *Status) {
	d, _ := state.Read(taintTolerationKey)
	tols, _ := d.(preferNoScheduleTolerations)
	var n int64
	for i := range node.Node().Spec.Taints {
		t := &node.Node().Spec.Taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule && !tolerationsTolerateTaint(tols, t) {
			n++
		}
	}
	return n, nil
}

func (TaintToleration) NormalizeScore(_ context.Context, _ *CycleState, _ *PodInfo, scores []NodeScore) *Status {
	normalizeScores(scores, true)
	return nil
}

// tolerationsTolerateTaint reports whether any toleration tolerates taint.
func tolerationsTolerateTaint(tols []corev1.Toleration, taint *corev1.Taint) bool {
	for i := range tols {
		if toleratesTaint(&tols[i], taint) {
			return true
		}
	}
	return false
}

// toleratesTaint: the effects match (an empty effect matches all), the
// keys match (an empty key with Exists matches all), and the operator
// holds (Exists, or Equal/empty with equal values).
func toleratesTaint(t *corev1.Toleration, taint *corev1.Taint) bool {
	if t.Effect != "" && t.Effect != taint.Effect {
		return false
	}
	if t.Key != "" && t.Key != taint.Key {
		return false
	}
	switch t.Operator {
	case "", corev1.TolerationOpEqual:
		return t.Value == taint.Value
	case corev1.TolerationOpExists:
		return true
	}
	return false
}
