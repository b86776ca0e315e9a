package scheduler

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestNodeResourcesFit(t *testing.T) {
	big := node("big", alloc("4", "8Gi", "110"))
	full := node("full", alloc("4", "8Gi", "2"))
	small := node("small", alloc("1", "1Gi", "110"))
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want map[string]string
	}{
		{"best effort fits anywhere with room for a pod", pod("p"),
			map[string]string{"big": "ok", "full": "U:Too many pods", "small": "ok"}},
		{"cpu counts what is assigned", pod("p", requests("2", "")),
			map[string]string{"big": "U:Insufficient cpu", "full": "U:Too many pods", "small": "UU:Insufficient cpu"}},
		{"memory and cpu both reported", pod("p", requests("3", "4Gi")),
			map[string]string{"big": "U:Insufficient cpu; Insufficient memory", "full": "U:Too many pods", "small": "UU:Insufficient cpu; Insufficient memory"}},
		{"fits exactly", pod("p", requests("1", "1Gi")),
			map[string]string{"big": "ok", "full": "U:Too many pods", "small": "ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := NewSnapshot(
				nodeInfo(big, pod("a", requests("3", "5Gi"))),
				nodeInfo(full, pod("b"), pod("c")),
				nodeInfo(small),
			)
			expectEqual(t, "verdicts", verdicts(runFilter(t, NodeResourcesFit{}, tc.pod, snap)), tc.want)
		})
	}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	rl := func(cpu string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}
	}
	for _, tc := range []struct {
		name string
		spec corev1.PodSpec
		want int64
	}{
		{"sum of containers", corev1.PodSpec{Containers: []corev1.Container{{Resources: rl("1")}, {Resources: rl("500m")}}}, 1500},
		{"init peak wins", corev1.PodSpec{InitContainers: []corev1.Container{{Resources: rl("3")}},
			Containers: []corev1.Container{{Resources: rl("1")}}}, 3000},
		{"sidecar adds to both", corev1.PodSpec{InitContainers: []corev1.Container{{Resources: rl("1"), RestartPolicy: &always}, {Resources: rl("2")}},
			Containers: []corev1.Container{{Resources: rl("1")}}}, 3000},
		{"overhead added", corev1.PodSpec{Overhead: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
			Containers: []corev1.Container{{Resources: rl("1")}}}, 1250},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := podRequests(&corev1.Pod{Spec: tc.spec})
			expectEqual(t, "milliCPU", got.MilliCPU, tc.want)
		})
	}
}

func TestExtendedResources(t *testing.T) {
	gpu := node("gpu", func(n *corev1.Node) { n.Status.Allocatable["example.com/gpu"] = resource.MustParse("2") })
	plain := node("plain")
	p := pod("p", func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{"example.com/gpu": resource.MustParse("1")}
	})
	snap := NewSnapshot(nodeInfo(gpu), nodeInfo(plain))
	expectEqual(t, "verdicts", verdicts(runFilter(t, NodeResourcesFit{}, p, snap)),
		map[string]string{"gpu": "ok", "plain": "UU:Insufficient example.com/gpu"})
}

func TestLeastAllocatedAndBalanced(t *testing.T) {
	snap := NewSnapshot(
		nodeInfo(node("empty", alloc("4", "8Gi", "110"))),
		nodeInfo(node("half", alloc("4", "8Gi", "110")), pod("a", requests("2", "4Gi"))),
		nodeInfo(node("skewed", alloc("4", "8Gi", "110")), pod("b", requests("3", "1Gi"))),
	)
	p := pod("p", requests("1", "2Gi"))
	least := runScore(t, NodeResourcesLeastAllocated{}, p, snap)
	// empty: cpu (4-1)/4=75, mem (8-2)/8=75 → 75; half: 25, 25 → 25;
	// skewed: cpu 0, mem (8-3)/8=62 → 31.
	expectEqual(t, "least allocated", least, map[string]int64{"empty": 75, "half": 25, "skewed": 31})
	bal := runScore(t, NodeResourcesBalancedAllocation{}, p, snap)
	// skewed: cpu 4/4=1, mem 3/8=.375 → std .3125 → 68.
	expectEqual(t, "balanced", bal, map[string]int64{"empty": 100, "half": 100, "skewed": 68})
	if runScore(t, NodeResourcesBalancedAllocation{}, pod("be"), snap) != nil {
		t.Error("a best-effort pod should skip balanced allocation")
	}
}
