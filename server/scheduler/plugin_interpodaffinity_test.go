package scheduler

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func term(key string, sel *metav1.LabelSelector) corev1.PodAffinityTerm {
	return corev1.PodAffinityTerm{TopologyKey: key, LabelSelector: sel}
}

func podAffinity(terms ...corev1.PodAffinityTerm) podOpt {
	return func(p *corev1.Pod) {
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &corev1.Affinity{}
		}
		p.Spec.Affinity.PodAffinity = &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: terms}
	}
}

func podAntiAffinity(terms ...corev1.PodAffinityTerm) podOpt {
	return func(p *corev1.Pod) {
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &corev1.Affinity{}
		}
		p.Spec.Affinity.PodAntiAffinity = &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: terms}
	}
}

// zoned: n1, n2 in zone a; n3 in zone b; n4 has no zone.
func zonedSnapshot(pods map[string][]*corev1.Pod) *Snapshot {
	nodes := []*corev1.Node{
		node("n1", nodeLabels("zone", "a")), node("n2", nodeLabels("zone", "a")),
		node("n3", nodeLabels("zone", "b")), node("n4"),
	}
	var infos []*NodeInfo
	for _, n := range nodes {
		infos = append(infos, nodeInfo(n, pods[n.Name]...))
	}
	return NewSnapshot(infos...)
}

func TestInterPodAffinityFilter(t *testing.T) {
	web := func(name string) *corev1.Pod { return pod(name, podLabels("app", "web")) }
	aff := "UU:" + ErrReasonAffinity
	anti := "U:" + ErrReasonAntiAffinity
	existing := "U:" + ErrReasonExistingAntiAffinity
	for _, tc := range []struct {
		name string
		pods map[string][]*corev1.Pod
		pod  *corev1.Pod
		want map[string]string
	}{
		{"affinity to a zone with a web pod", map[string][]*corev1.Pod{"n1": {web("w")}},
			pod("p", podAffinity(term("zone", labelSelector("app", "web")))),
			map[string]string{"n1": "ok", "n2": "ok", "n3": aff, "n4": aff}},
		{"first pod of a self-affine group goes anywhere with the key", nil,
			pod("p", podLabels("app", "web"), podAffinity(term("zone", labelSelector("app", "web")))),
			map[string]string{"n1": "ok", "n2": "ok", "n3": "ok", "n4": aff}},
		{"no match and not self-affine", nil,
			pod("p", podAffinity(term("zone", labelSelector("app", "web")))),
			map[string]string{"n1": aff, "n2": aff, "n3": aff, "n4": aff}},
		{"anti-affinity per hostname", map[string][]*corev1.Pod{"n1": {web("w")}},
			pod("p", podLabels("app", "web"), podAntiAffinity(term(corev1.LabelHostname, labelSelector("app", "web")))),
			map[string]string{"n1": anti, "n2": "ok", "n3": "ok", "n4": "ok"}},
		{"anti-affinity per zone", map[string][]*corev1.Pod{"n1": {web("w")}},
			pod("p", podAntiAffinity(term("zone", labelSelector("app", "web")))),
			map[string]string{"n1": anti, "n2": anti, "n3": "ok", "n4": "ok"}},
		{"other namespaces do not count", map[string][]*corev1.Pod{"n1": {pod("w", podLabels("app", "web"), func(p *corev1.Pod) { p.Namespace = "other" })}},
			pod("p", podAntiAffinity(term("zone", labelSelector("app", "web")))),
			map[string]string{"n1": "ok", "n2": "ok", "n3": "ok", "n4": "ok"}},
		{"existing pod's anti-affinity keeps us out", map[string][]*corev1.Pod{"n3": {pod("db", podAntiAffinity(term("zone", labelSelector("app", "web"))))}},
			web("p"),
			map[string]string{"n1": "ok", "n2": "ok", "n3": existing, "n4": "ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectEqual(t, "verdicts", verdicts(runFilter(t, InterPodAffinity{}, tc.pod, zonedSnapshot(tc.pods))), tc.want)
		})
	}
}

func TestInterPodAffinityScore(t *testing.T) {
	pods := map[string][]*corev1.Pod{
		"n1": {pod("cache", podLabels("app", "cache"))},
		"n3": {pod("noisy", podLabels("app", "noisy"))},
	}
	p := pod("p", func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{
			PodAffinity: &corev1.PodAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{
				{Weight: 10, PodAffinityTerm: term("zone", labelSelector("app", "cache"))}}},
			PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{
				{Weight: 5, PodAffinityTerm: term(corev1.LabelHostname, labelSelector("app", "noisy"))}}},
		}
	})
	// Raw: n1 10, n2 10, n3 -5, n4 0 → min-max normalized.
	expectEqual(t, "scores", runScore(t, InterPodAffinity{}, p, zonedSnapshot(pods)),
		map[string]int64{"n1": 100, "n2": 100, "n3": 0, "n4": 33})
	if runScore(t, InterPodAffinity{}, pod("plain"), zonedSnapshot(pods)) != nil {
		t.Error("no terms anywhere: scoring should skip")
	}
}

func TestInterPodAffinityPreemptionExtensions(t *testing.T) {
	victim := pod("w", podLabels("app", "web"))
	snap := zonedSnapshot(map[string][]*corev1.Pod{"n1": {victim}})
	p := info(pod("p", podAntiAffinity(term(corev1.LabelHostname, labelSelector("app", "web")))))
	state := NewCycleState()
	pl := InterPodAffinity{}
	if st := pl.PreFilter(t.Context(), state, p, snap); !st.IsSuccess() {
		t.Fatal(st)
	}
	n1 := snap.Get("n1")
	if pl.Filter(t.Context(), state, p, n1).IsSuccess() {
		t.Fatal("n1 holds a web pod")
	}
	clone := state.Clone()
	pl.RemovePod(clone, p, info(victim), n1)
	if st := pl.Filter(t.Context(), clone, p, n1); !st.IsSuccess() {
		t.Fatalf("after removing the victim: %v", st)
	}
	if pl.Filter(t.Context(), state, p, n1).IsSuccess() {
		t.Fatal("the original state changed")
	}
}
