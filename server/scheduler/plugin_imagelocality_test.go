package scheduler

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func images(list ...corev1.ContainerImage) nodeOpt {
	return func(n *corev1.Node) { n.Status.Images = list }
}

func TestImageLocality(t *testing.T) {
	const mb = 1 << 20
	snap := NewSnapshot(
		nodeInfo(node("big", images(corev1.ContainerImage{Names: []string{"app:v1"}, SizeBytes: 800 * mb}))),
		nodeInfo(node("both", images(corev1.ContainerImage{Names: []string{"app:v1"}, SizeBytes: 800 * mb},
			corev1.ContainerImage{Names: []string{"tiny"}, SizeBytes: 10 * mb}))),
		nodeInfo(node("none")),
		nodeInfo(node("other", images(corev1.ContainerImage{Names: []string{"other:latest"}, SizeBytes: 500 * mb}))),
	)
	p := pod("p", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "app:v1" })
	got := runScore(t, ImageLocality{}, p, snap)
	if !(got["big"] > 0 && got["big"] == got["both"] && got["none"] == 0 && got["other"] == 0) {
		t.Errorf("scores %v", got)
	}
	// An image on every node gives no node an edge... (spread 4/4 = 1 here
	// only the tiny image is below the threshold).
	tiny := pod("t", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "tiny:latest" })
	expectEqual(t, "tiny image", runScore(t, ImageLocality{}, tiny, snap), map[string]int64{"big": 0, "both": 0, "none": 0, "other": 0})
	expectEqual(t, "normalize", normalizeImage("nginx"), "nginx:latest")
	expectEqual(t, "normalize with port", normalizeImage("reg:5000/nginx"), "reg:5000/nginx:latest")
	expectEqual(t, "digest kept", normalizeImage("nginx@sha256:ab"), "nginx@sha256:ab")
}
