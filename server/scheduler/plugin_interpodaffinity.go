package scheduler

import (
	"context"
	"maps"
	"math"

	corev1 "k8s.io/api/core/v1"
)

// InterPodAffinity enforces required pod affinity and anti-affinity (the
// incoming pod's terms, and the anti-affinity terms of pods already
// placed), and scores nodes by preferred terms of both sides.
type InterPodAffinity struct{}

// Reasons as kube-scheduler words them.
const (
	ErrReasonExistingAntiAffinity = "node(s) didn't satisfy existing pods anti-affinity rules"
	ErrReasonAffinity             = "node(s) didn't match pod affinity rules"
	ErrReasonAntiAffinity         = "node(s) didn't match pod anti-affinity rules"
)

// hardPodAffinityWeight is the score weight of existing pods' required
// affinity terms that the incoming pod matches.
const hardPodAffinityWeight = 1

const interPodAffinityKey = "InterPodAffinity"

type topologyPair struct{ key, value string }

type pairCounts map[topologyPair]int64

func (c pairCounts) add(node *corev1.Node, key string, n int64) {
	if v, ok := node.Labels[key]; ok {
		p := topologyPair{key, v}
		c[p] += n
		if c[p] == 0 {
			delete(c, p)
		}
	}
}

// interPodAffinityState is the PreFilter state: per topology pair, how
// many placed pods' anti-affinity terms the pod matches, and how many
// placed pods match the pod's affinity and anti-affinity terms.
type interPodAffinityState struct {
	existingAnti pairCounts
	affinity     pairCounts
	anti         pairCounts
	nsLabels     NamespaceLabels
}

func (s *interPodAffinityState) Clone() StateData {
	return &interPodAffinityState{existingAnti: maps.Clone(s.existingAnti), affinity: maps.Clone(s.affinity),
		anti: maps.Clone(s.anti), nsLabels: s.nsLabels}
}

func (InterPodAffinity) Name() string { return "InterPodAffinity" }

func (pl InterPodAffinity) PreFilter(_ context.Context, state *CycleState, pod *PodInfo, snap *Snapshot) *Status {
	if pod.ParseError != nil {
		return NewStatus(UnschedulableAndUnresolvable, pod.ParseError.Error())
	}
	hasTerms := len(pod.RequiredAffinityTerms)+len(pod.RequiredAntiAffinityTerms) > 0
	if !hasTerms && len(snap.HavePodsWithRequiredAntiAffinity) == 0 {
		return NewStatus(Skip)
	}
	s := &interPodAffinityState{existingAnti: pairCounts{}, affinity: pairCounts{}, anti: pairCounts{}, nsLabels: snap.nsLabels}
	for _, n := range snap.HavePodsWithRequiredAntiAffinity {
		for _, ep := range n.PodsWithRequiredAntiAffinity {
			s.countExistingAnti(pod, ep, n.Node(), 1)
		}
	}
	if hasTerms {
		for _, n := range snap.NodeInfoList {
			for _, ep := range n.Pods {
				s.countIncoming(pod, ep, n.Node(), 1)
			}
		}
	}
	state.Write(interPodAffinityKey, s)
	return nil
}

// countExistingAnti counts the placed pod ep's required anti-affinity
// terms that select the incoming pod.
func (s *interPodAffinityState) countExistingAnti(pod, ep *PodInfo, node *corev1.Node, sign int64) {
	for i := range ep.RequiredAntiAffinityTerms {
		t := &ep.RequiredAntiAffinityTerms[i]
		if t.Matches(pod.Pod, s.nsLabels) {
			s.existingAnti.add(node, t.TopologyKey, sign)
		}
	}
}

// countIncoming counts the placed pod ep for the incoming pod's terms.
func (s *interPodAffinityState) countIncoming(pod, ep *PodInfo, node *corev1.Node, sign int64) {
	if len(pod.RequiredAffinityTerms) > 0 && matchesAllTerms(pod.RequiredAffinityTerms, ep.Pod, s.nsLabels) {
		for i := range pod.RequiredAffinityTerms {
			s.affinity.add(node, pod.RequiredAffinityTerms[i].TopologyKey, sign)
		}
	}
	for i := range pod.RequiredAntiAffinityTerms {
		t := &pod.RequiredAntiAffinityTerms[i]
		if t.Matches(ep.Pod, s.nsLabels) {
			s.anti.add(node, t.TopologyKey, sign)
		}
	}
}

func matchesAllTerms(terms []AffinityTerm, pod *corev1.Pod, nsLabels NamespaceLabels) bool {
	for i := range terms {
		if !terms[i].Matches(pod, nsLabels) {
			return false
		}
	}
	return len(terms) > 0
}

func (pl InterPodAffinity) AddPod(state *CycleState, pod *PodInfo, add *PodInfo, node *NodeInfo) *Status {
	return pl.update(state, pod, add, node, 1)
}

func (pl InterPodAffinity) RemovePod(state *CycleState, pod *PodInfo, remove *PodInfo, node *NodeInfo) *Status {
	return pl.update(state, pod, remove, node, -1)
}

func (InterPodAffinity) update(state *CycleState, pod, other *PodInfo, node *NodeInfo, sign int64) *Status {
	d, ok := state.Read(interPodAffinityKey)
	if !ok {
		return nil
	}
	s := d.(*interPodAffinityState)
	s.countExistingAnti(pod, other, node.Node(), sign)
	s.countIncoming(pod, other, node.Node(), sign)
	return nil
}

func (InterPodAffinity) Filter(_ context.Context, state *CycleState, pod *PodInfo, node *NodeInfo) *Status {
	d, ok := state.Read(interPodAffinityKey)
	if !ok {
		return nil
	}
	s := d.(*interPodAffinityState)
	n := node.Node()
	// kube-scheduler's order: the pod's affinity, its anti-affinity, then
	// the placed pods' anti-affinity.
	if !s.satisfiesAffinity(pod, n) {
		return NewStatus(UnschedulableAndUnresolvable, ErrReasonAffinity)
	}
	for i := range pod.RequiredAntiAffinityTerms {
		key := pod.RequiredAntiAffinityTerms[i].TopologyKey
		if v, ok := n.Labels[key]; ok && s.anti[topologyPair{key, v}] > 0 {
			return NewStatus(Unschedulable, ErrReasonAntiAffinity)
		}
	}
	if len(s.existingAnti) > 0 {
		for k, v := range n.Labels {
			if s.existingAnti[topologyPair{k, v}] > 0 {
				return NewStatus(Unschedulable, ErrReasonExistingAntiAffinity)
			}
		}
	}
	return nil
}

// satisfiesAffinity: the node has every term's topology key, and a pod
// matching the terms runs in each of the node's domains; or no pod
// anywhere matches and the pod matches its own terms (the first pod of a
// group with affinity to itself).
func (s *interPodAffinityState) satisfiesAffinity(pod *PodInfo, n *corev1.Node) bool {
	exist := true
	for i := range pod.RequiredAffinityTerms {
		key := pod.RequiredAffinityTerms[i].TopologyKey
		v, ok := n.Labels[key]
		if !ok {
			return false
		}
		if s.affinity[topologyPair{key, v}] <= 0 {
			exist = false
		}
	}
	if exist {
		return true
	}
	return len(s.affinity) == 0 && matchesAllTerms(pod.RequiredAffinityTerms, pod.Pod, s.nsLabels)
}

const interPodAffinityScoreKey = "InterPodAffinityScore"

// interPodScoreState sums, per topology key and value, the weights of the
// preferred terms (and existing pods' required affinity) that hold there.
type interPodScoreState struct {
	scores map[string]map[string]int64
}

func (s *interPodScoreState) Clone() StateData { return s }

func (InterPodAffinity) PreScore(_ context.Context, state *CycleState, pod *PodInfo, _ []*NodeInfo, snap *Snapshot) *Status {
	own := len(pod.PreferredAffinityTerms)+len(pod.PreferredAntiAffinityTerms) > 0
	if !own && len(snap.HavePodsWithAffinity) == 0 {
		return NewStatus(Skip)
	}
	s := &interPodScoreState{scores: map[string]map[string]int64{}}
	add := func(node *corev1.Node, key string, w int64) {
		v, ok := node.Labels[key]
		if !ok || w == 0 {
			return
		}
		m := s.scores[key]
		if m == nil {
			m = map[string]int64{}
			s.scores[key] = m
		}
		m[v] += w
	}
	nodes := snap.HavePodsWithAffinity
	if own {
		nodes = snap.NodeInfoList
	}
	for _, n := range nodes {
		node := n.Node()
		pods := n.PodsWithAffinity
		if own {
			pods = n.Pods
		}
		for _, ep := range pods {
			for i := range pod.PreferredAffinityTerms {
				if t := &pod.PreferredAffinityTerms[i]; t.Matches(ep.Pod, snap.nsLabels) {
					add(node, t.TopologyKey, int64(t.Weight))
				}
			}
			for i := range pod.PreferredAntiAffinityTerms {
				if t := &pod.PreferredAntiAffinityTerms[i]; t.Matches(ep.Pod, snap.nsLabels) {
					add(node, t.TopologyKey, -int64(t.Weight))
				}
			}
			for i := range ep.RequiredAffinityTerms {
				if t := &ep.RequiredAffinityTerms[i]; t.Matches(pod.Pod, snap.nsLabels) {
					add(node, t.TopologyKey, hardPodAffinityWeight)
				}
			}
			for i := range ep.PreferredAffinityTerms {
				if t := &ep.PreferredAffinityTerms[i]; t.Matches(pod.Pod, snap.nsLabels) {
					add(node, t.TopologyKey, int64(t.Weight))
				}
			}
			for i := range ep.PreferredAntiAffinityTerms {
				if t := &ep.PreferredAntiAffinityTerms[i]; t.Matches(pod.Pod, snap.nsLabels) {
					add(node, t.TopologyKey, -int64(t.Weight))
				}
			}
		}
	}
	state.Write(interPodAffinityScoreKey, s)
	return nil
}

func (InterPodAffinity) Score(_ context.Context, state *CycleState, _ *PodInfo, node *NodeInfo) (int64, *Status) {
	d, _ := state.Read(interPodAffinityScoreKey)
	s, _ := d.(*interPodScoreState)
	if s == nil {
		return 0, nil
	}
	var score int64
	for key, values := range s.scores {
		if v, ok := node.Node().Labels[key]; ok {
			score += values[v]
		}
	}
	return score, nil
}

// NormalizeScore maps the scores linearly from [min, max] to [0, 100].
func (InterPodAffinity) NormalizeScore(_ context.Context, _ *CycleState, _ *PodInfo, scores []NodeScore) *Status {
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, s := range scores {
		lo, hi = min(lo, s.Score), max(hi, s.Score)
	}
	for i := range scores {
		if hi > lo {
			scores[i].Score = int64(float64(MaxNodeScore) * float64(scores[i].Score-lo) / float64(hi-lo))
		} else {
			scores[i].Score = 0
		}
	}
	return nil
}
