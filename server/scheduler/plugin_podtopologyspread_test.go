package scheduler

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func spread(key string, skew int32, action corev1.UnsatisfiableConstraintAction, kv ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
			MaxSkew: skew, TopologyKey: key, WhenUnsatisfiable: action, LabelSelector: labelSelector(kv...)})
	}
}

func TestPodTopologySpreadFilter(t *testing.T) {
	web := func(name string) *corev1.Pod { return pod(name, podLabels("app", "web")) }
	skewed := "U:" + ErrReasonSpreadConstraintsNotMatch
	missing := "UU:" + ErrReasonSpreadMissingLabel
	for _, tc := range []struct {
		name string
		pods map[string][]*corev1.Pod
		pod  *corev1.Pod
		want map[string]string
	}{
		{"zones a=2, b=0: maxSkew 1 wants b", map[string][]*corev1.Pod{"n1": {web("1")}, "n2": {web("2")}},
			pod("p", podLabels("app", "web"), spread("zone", 1, corev1.DoNotSchedule, "app", "web")),
			map[string]string{"n1": skewed, "n2": skewed, "n3": "ok", "n4": missing}},
		{"maxSkew 2 lets zone a take one more", map[string][]*corev1.Pod{"n1": {web("1")}},
			pod("p", podLabels("app", "web"), spread("zone", 2, corev1.DoNotSchedule, "app", "web")),
			map[string]string{"n1": "ok", "n2": "ok", "n3": "ok", "n4": missing}},
		{"per hostname, even", map[string][]*corev1.Pod{"n1": {web("1")}, "n2": {web("2")}, "n3": {web("3")}, "n4": {web("4")}},
			pod("p", podLabels("app", "web"), spread(corev1.LabelHostname, 1, corev1.DoNotSchedule, "app", "web")),
			map[string]string{"n1": "ok", "n2": "ok", "n3": "ok", "n4": "ok"}},
		{"per hostname, empty nodes first", map[string][]*corev1.Pod{"n1": {web("1")}, "n2": {web("2")}},
			pod("p", podLabels("app", "web"), spread(corev1.LabelHostname, 1, corev1.DoNotSchedule, "app", "web")),
			map[string]string{"n1": skewed, "n2": skewed, "n3": "ok", "n4": "ok"}},
		{"minDomains above the domain count makes the minimum 0", map[string][]*corev1.Pod{"n1": {web("1")}, "n3": {web("2")}},
			pod("p", podLabels("app", "web"), spread("zone", 1, corev1.DoNotSchedule, "app", "web"),
				func(p *corev1.Pod) { three := int32(3); p.Spec.TopologySpreadConstraints[0].MinDomains = &three }),
			map[string]string{"n1": skewed, "n2": skewed, "n3": skewed, "n4": missing}},
		{"ScheduleAnyway does not filter", map[string][]*corev1.Pod{"n1": {web("1")}, "n2": {web("2")}},
			pod("p", podLabels("app", "web"), spread("zone", 1, corev1.ScheduleAnyway, "app", "web")),
			map[string]string{"n1": "ok", "n2": "ok", "n3": "ok", "n4": "ok"}},
		{"nodes failing node affinity do not count", map[string][]*corev1.Pod{"n1": {web("1")}},
			pod("p", podLabels("app", "web"), spread("zone", 1, corev1.DoNotSchedule, "app", "web"),
				func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"zone": "a"} }),
			map[string]string{"n1": "ok", "n2": "ok", "n3": "ok", "n4": missing}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectEqual(t, "verdicts", verdicts(runFilter(t, PodTopologySpread{}, tc.pod, zonedSnapshot(tc.pods))), tc.want)
		})
	}
}

func TestPodTopologySpreadScore(t *testing.T) {
	web := func(name string) *corev1.Pod { return pod(name, podLabels("app", "web")) }
	pods := map[string][]*corev1.Pod{"n1": {web("1"), web("2")}, "n2": {web("3")}}
	p := pod("p", podLabels("app", "web"), spread(corev1.LabelHostname, 1, corev1.ScheduleAnyway, "app", "web"))
	got := runScore(t, PodTopologySpread{}, p, zonedSnapshot(pods))
	if !(got["n3"] > got["n2"] && got["n2"] > got["n1"] && got["n4"] == got["n3"]) {
		t.Errorf("emptier nodes should score higher: %v", got)
	}
	if got["n3"] != MaxNodeScore {
		t.Errorf("the emptiest node should get %d: %v", MaxNodeScore, got)
	}
}

func TestPodTopologySpreadDefaults(t *testing.T) {
	web := func(name string) *corev1.Pod { return pod(name, podLabels("app", "web")) }
	pods := map[string][]*corev1.Pod{"n1": {web("1"), web("2")}, "n2": {web("3")}}
	pl := PodTopologySpread{DefaultSelector: func(p *corev1.Pod) labels.Selector {
		if p.Labels["app"] == "web" {
			return labels.SelectorFromSet(labels.Set{"app": "web"})
		}
		return nil
	}}
	got := runScore(t, pl, web("p"), zonedSnapshot(pods))
	if !(got["n3"] > got["n1"] && got["n4"] > got["n1"]) {
		t.Errorf("default spreading should prefer empty nodes: %v", got)
	}
	if runScore(t, pl, pod("lonely"), zonedSnapshot(pods)) != nil {
		t.Error("a pod no controller selects has no default spreading")
	}
}
