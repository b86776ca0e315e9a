package scheduler

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestTaintTolerationFilter(t *testing.T) {
	snap := NewSnapshot(
		nodeInfo(node("clean")),
		nodeInfo(node("gpu", taint("gpu", "true", corev1.TaintEffectNoSchedule))),
		nodeInfo(node("draining", taint("drain", "", corev1.TaintEffectNoExecute))),
		nodeInfo(node("soft", taint("soft", "x", corev1.TaintEffectPreferNoSchedule))),
	)
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want map[string]string
	}{
		{"no tolerations", pod("p"), map[string]string{"clean": "ok",
			"gpu": "UU:node(s) had untolerated taint {gpu: true}", "draining": "UU:node(s) had untolerated taint {drain: }", "soft": "ok"}},
		{"equal toleration", pod("p", toleration(corev1.Toleration{Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule})),
			map[string]string{"clean": "ok", "gpu": "ok", "draining": "UU:node(s) had untolerated taint {drain: }", "soft": "ok"}},
		{"wrong value", pod("p", toleration(corev1.Toleration{Key: "gpu", Value: "false"})),
			map[string]string{"clean": "ok", "gpu": "UU:node(s) had untolerated taint {gpu: true}", "draining": "UU:node(s) had untolerated taint {drain: }", "soft": "ok"}},
		{"exists without key tolerates everything", pod("p", toleration(corev1.Toleration{Operator: corev1.TolerationOpExists})),
			map[string]string{"clean": "ok", "gpu": "ok", "draining": "ok", "soft": "ok"}},
		{"effect must match", pod("p", toleration(corev1.Toleration{Key: "drain", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})),
			map[string]string{"clean": "ok", "gpu": "UU:node(s) had untolerated taint {gpu: true}", "draining": "UU:node(s) had untolerated taint {drain: }", "soft": "ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectEqual(t, "verdicts", verdicts(runFilter(t, TaintToleration{}, tc.pod, snap)), tc.want)
		})
	}
}

func TestTaintTolerationScore(t *testing.T) {
	snap := NewSnapshot(
		nodeInfo(node("clean")),
		nodeInfo(node("one", taint("a", "", corev1.TaintEffectPreferNoSchedule))),
		nodeInfo(node("two", taint("a", "", corev1.TaintEffectPreferNoSchedule), taint("b", "", corev1.TaintEffectPreferNoSchedule))),
	)
	expectEqual(t, "no tolerations", runScore(t, TaintToleration{}, pod("p"), snap),
		map[string]int64{"clean": 100, "one": 50, "two": 0})
	tol := pod("p", toleration(corev1.Toleration{Key: "a", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectPreferNoSchedule}))
	expectEqual(t, "tolerating a", runScore(t, TaintToleration{}, tol, snap),
		map[string]int64{"clean": 100, "one": 100, "two": 0})
}
