package scheduler

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ImageLocality favours nodes that already have the pod's images, weighed
// by size and by how few nodes have them (an image everywhere gives no
// node an edge), as kube-scheduler's plugin does.
type ImageLocality struct{}

// Thresholds of the image size sum: below min scores 0, above
// max per container scores MaxNodeScore.
const (
	imageMinThreshold          int64 = 23 << 20
	imageMaxContainerThreshold int64 = 1000 << 20
)

func (ImageLocality) Name() string { return "ImageLocality" }

const imageLocalityKey = "ImageLocality"

// imageLocalityState is the pod's normalized image names and the node
// count.
type imageLocalityState struct {
	images   []string
	numNodes int
	spread   map[string]int
}

func (s *imageLocalityState) Clone() StateData { return s }

func (ImageLocality) PreScore(_ context.Context, state *CycleState, pod *PodInfo, _ []*NodeInfo, snap *Snapshot) *Status {
	if len(snap.ImageNumNodes) == 0 {
		return NewStatus(Skip) // no node reports images
	}
	s := &imageLocalityState{numNodes: snap.NumNodes(), spread: snap.ImageNumNodes}
	for _, c := range pod.Pod.Spec.InitContainers {
		s.images = append(s.images, normalizeImage(c.Image))
	}
	for _, c := range pod.Pod.Spec.Containers {
		s.images = append(s.images, normalizeImage(c.Image))
	}
	state.Write(imageLocalityKey, s)
	return nil
}

func (ImageLocality) Score(_ context.Context, state *CycleState, _ *PodInfo, node *NodeInfo) (int64, *Status) {
	d, _ := state.Read(imageLocalityKey)
	s, _ := d.(*imageLocalityState)
	if s == nil || s.numNodes == 0 || len(s.images) == 0 {
		return 0, nil
	}
	var sum int64
	for _, img := range s.images {
		if size, ok := node.Images[img]; ok {
			sum += int64(float64(size) * float64(s.spread[img]) / float64(s.numNodes))
		}
	}
	maxThreshold := imageMaxContainerThreshold * int64(len(s.images))
	switch {
	case sum < imageMinThreshold:
		sum = imageMinThreshold
	case sum > maxThreshold:
		sum = maxThreshold
	}
	return MaxNodeScore * (sum - imageMinThreshold) / (maxThreshold - imageMinThreshold), nil
}

// nodeImages maps the normalized names of a node's images to their sizes.
func nodeImages(node *corev1.Node) map[string]int64 {
	if len(node.Status.Images) == 0 {
		return nil
	}
	out := map[string]int64{}
	for _, img := range node.Status.Images {
		for _, name := range img.Names {
			out[normalizeImage(name)] = img.SizeBytes
		}
	}
	return out
}

// normalizeImage adds the :latest tag to an image without tag or digest.
func normalizeImage(name string) string {
	if name == "" {
		return ""
	}
	last := name[strings.LastIndex(name, "/")+1:]
	if !strings.Contains(last, ":") && !strings.Contains(name, "@") {
		return name + ":latest"
	}
	return name
}
