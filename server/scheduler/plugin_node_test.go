package scheduler

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestNodeUnschedulable(t *testing.T) {
	snap := NewSnapshot(nodeInfo(node("open")), nodeInfo(node("cordoned", cordoned)))
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want map[string]string
	}{
		{"cordoned node refused", pod("p"), map[string]string{"open": "ok", "cordoned": "UU:node(s) were unschedulable"}},
		{"toleration of the unschedulable taint", pod("p", toleration(corev1.Toleration{Key: corev1.TaintNodeUnschedulable,
			Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})), map[string]string{"open": "ok", "cordoned": "ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectEqual(t, "verdicts", verdicts(runFilter(t, NodeUnschedulable{}, tc.pod, snap)), tc.want)
		})
	}
}

func TestNodeName(t *testing.T) {
	snap := NewSnapshot(nodeInfo(node("a")), nodeInfo(node("b")))
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want map[string]string
	}{
		{"no name: any node", pod("p"), map[string]string{"a": "ok", "b": "ok"}},
		{"named node only", pod("p", onNode("b")), map[string]string{"a": "UU:node(s) didn't match the requested node name", "b": "ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectEqual(t, "verdicts", verdicts(runFilter(t, NodeName{}, tc.pod, snap)), tc.want)
		})
	}
}

func TestNodePorts(t *testing.T) {
	snap := NewSnapshot(
		nodeInfo(node("free")),
		nodeInfo(node("any"), pod("a", hostPortOpt(8080, ""))),
		nodeInfo(node("oneip"), pod("b", hostPortOpt(8080, "10.0.0.1"))),
	)
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want map[string]string
	}{
		{"no host ports skip", pod("p"), map[string]string{"free": "ok", "any": "ok", "oneip": "ok"}},
		{"0.0.0.0 clashes with any IP", pod("p", hostPortOpt(8080, "")),
			map[string]string{"free": "ok", "any": "U:" + ErrReasonNodePorts, "oneip": "U:" + ErrReasonNodePorts}},
		{"another IP on the same port is free", pod("p", hostPortOpt(8080, "10.0.0.2")),
			map[string]string{"free": "ok", "any": "U:" + ErrReasonNodePorts, "oneip": "ok"}},
		{"another port", pod("p", hostPortOpt(9090, "")), map[string]string{"free": "ok", "any": "ok", "oneip": "ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectEqual(t, "verdicts", verdicts(runFilter(t, NodePorts{}, tc.pod, snap)), tc.want)
		})
	}
}
