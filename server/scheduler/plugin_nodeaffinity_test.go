package scheduler

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func requiredAffinity(terms ...corev1.NodeSelectorTerm) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
	}
}

func expr(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func TestNodeAffinityFilter(t *testing.T) {
	snap := NewSnapshot(
		nodeInfo(node("ssd", nodeLabels("disk", "ssd", "cores", "16"))),
		nodeInfo(node("hdd", nodeLabels("disk", "hdd", "cores", "4"))),
		nodeInfo(node("bare")),
	)
	no := "UU:" + ErrReasonNodeAffinity
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want map[string]string
	}{
		{"nothing asked", pod("p"), map[string]string{"ssd": "ok", "hdd": "ok", "bare": "ok"}},
		{"nodeSelector", pod("p", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} }),
			map[string]string{"ssd": "ok", "hdd": no, "bare": no}},
		{"In", pod("p", requiredAffinity(expr("disk", corev1.NodeSelectorOpIn, "ssd", "hdd"))),
			map[string]string{"ssd": "ok", "hdd": "ok", "bare": no}},
		{"NotIn matches nodes without the label", pod("p", requiredAffinity(expr("disk", corev1.NodeSelectorOpNotIn, "ssd"))),
			map[string]string{"ssd": no, "hdd": "ok", "bare": "ok"}},
		{"DoesNotExist", pod("p", requiredAffinity(expr("disk", corev1.NodeSelectorOpDoesNotExist))),
			map[string]string{"ssd": no, "hdd": no, "bare": "ok"}},
		{"Gt", pod("p", requiredAffinity(expr("cores", corev1.NodeSelectorOpGt, "8"))),
			map[string]string{"ssd": "ok", "hdd": no, "bare": no}},
		{"terms are ORed", pod("p", requiredAffinity(expr("disk", corev1.NodeSelectorOpIn, "ssd"), expr("disk", corev1.NodeSelectorOpDoesNotExist))),
			map[string]string{"ssd": "ok", "hdd": no, "bare": "ok"}},
		{"matchFields metadata.name", pod("p", requiredAffinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{
			{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"hdd"}}}})),
			map[string]string{"ssd": no, "hdd": "ok", "bare": no}},
		{"empty term matches nothing", pod("p", requiredAffinity(corev1.NodeSelectorTerm{})),
			map[string]string{"ssd": no, "hdd": no, "bare": no}},
		{"selector and affinity both apply", pod("p", requiredAffinity(expr("disk", corev1.NodeSelectorOpExists)),
			func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"cores": "4"} }),
			map[string]string{"ssd": no, "hdd": "ok", "bare": no}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectEqual(t, "verdicts", verdicts(runFilter(t, NodeAffinity{}, tc.pod, snap)), tc.want)
		})
	}
}

func TestNodeAffinityScore(t *testing.T) {
	snap := NewSnapshot(
		nodeInfo(node("ssd", nodeLabels("disk", "ssd", "zone", "a"))),
		nodeInfo(node("hdd", nodeLabels("disk", "hdd", "zone", "a"))),
		nodeInfo(node("bare")),
	)
	p := pod("p", func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{
			{Weight: 10, Preference: expr("disk", corev1.NodeSelectorOpIn, "ssd")},
			{Weight: 5, Preference: expr("zone", corev1.NodeSelectorOpIn, "a")},
		}}}
	})
	expectEqual(t, "scores", runScore(t, NodeAffinity{}, p, snap), map[string]int64{"ssd": 100, "hdd": 33, "bare": 0})
	if runScore(t, NodeAffinity{}, pod("none"), snap) != nil {
		t.Error("a pod without preferences should skip scoring")
	}
}
