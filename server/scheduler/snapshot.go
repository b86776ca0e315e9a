package scheduler

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Snapshot is the cluster as one scheduling attempt sees it: node infos
// that do not change while the attempt runs. The cache updates it in
// place between attempts, cloning only the nodes that changed.
type Snapshot struct {
	nodeInfoMap map[string]*NodeInfo
	// NodeInfoList is every node, zones interleaved (as kube-scheduler's
	// node tree) so that a sample of the list spreads over zones.
	NodeInfoList []*NodeInfo
	index        map[string]int
	// HavePodsWithAffinity and HavePodsWithRequiredAntiAffinity list the
	// nodes with such pods (the inter-pod affinity plugin looks only there
	// when the incoming pod has no terms of its own).
	HavePodsWithAffinity             []*NodeInfo
	HavePodsWithRequiredAntiAffinity []*NodeInfo
	// ImageNumNodes is on how many nodes each image is.
	ImageNumNodes map[string]int
	// NamespaceLabels looks up namespace labels (namespaceSelector).
	NamespaceLabels NamespaceLabels
	// Nominated lists pods nominated to each node by preemption.
	Nominated map[string][]*PodInfo
}

// NewSnapshot builds a snapshot of node infos (tests and preemption).
func NewSnapshot(nodes ...*NodeInfo) *Snapshot {
	s := &Snapshot{nodeInfoMap: map[string]*NodeInfo{}, index: map[string]int{}, ImageNumNodes: map[string]int{}}
	for _, n := range nodes {
		s.nodeInfoMap[n.Name()] = n
		for img := range n.Images {
			s.ImageNumNodes[img]++
		}
	}
	s.rebuildList()
	return s
}

// Get returns a node's info.
func (s *Snapshot) Get(name string) *NodeInfo { return s.nodeInfoMap[name] }

// NumNodes is the number of nodes.
func (s *Snapshot) NumNodes() int { return len(s.NodeInfoList) }

func (s *Snapshot) nsLabels(ns string) labels.Set {
	if s.NamespaceLabels == nil {
		return nil
	}
	return s.NamespaceLabels(ns)
}

// rebuildList orders the nodes: grouped by zone, zones sorted, names sorted
// within a zone, then interleaved one node per zone at a time.
func (s *Snapshot) rebuildList() {
	zones := map[string][]*NodeInfo{}
	var zoneNames []string
	for _, n := range s.nodeInfoMap {
		z := nodeZone(n.Node())
		if _, ok := zones[z]; !ok {
			zoneNames = append(zoneNames, z)
		}
		zones[z] = append(zones[z], n)
	}
	sort.Strings(zoneNames)
	for _, z := range zoneNames {
		l := zones[z]
		sort.Slice(l, func(i, j int) bool { return l[i].Name() < l[j].Name() })
	}
	s.NodeInfoList = s.NodeInfoList[:0]
	for i := 0; len(s.NodeInfoList) < len(s.nodeInfoMap); i++ {
		for _, z := range zoneNames {
			if l := zones[z]; i < len(l) {
				s.NodeInfoList = append(s.NodeInfoList, l[i])
			}
		}
	}
	s.index = make(map[string]int, len(s.NodeInfoList))
	for i, n := range s.NodeInfoList {
		s.index[n.Name()] = i
	}
	s.rebuildAffinityLists()
}

func (s *Snapshot) rebuildAffinityLists() {
	s.HavePodsWithAffinity = s.HavePodsWithAffinity[:0]
	s.HavePodsWithRequiredAntiAffinity = s.HavePodsWithRequiredAntiAffinity[:0]
	for _, n := range s.NodeInfoList {
		if len(n.PodsWithAffinity) > 0 {
			s.HavePodsWithAffinity = append(s.HavePodsWithAffinity, n)
		}
		if len(n.PodsWithRequiredAntiAffinity) > 0 {
			s.HavePodsWithRequiredAntiAffinity = append(s.HavePodsWithRequiredAntiAffinity, n)
		}
	}
}

// nodeZone is the node's zone (region and zone labels), "" without.
func nodeZone(n *corev1.Node) string {
	if n == nil {
		return ""
	}
	r, z := n.Labels[corev1.LabelTopologyRegion], n.Labels[corev1.LabelTopologyZone]
	if r == "" && z == "" {
		return ""
	}
	return r + ":\x00:" + z
}
