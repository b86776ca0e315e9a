package scheduler

import (
	"context"
	"math"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/sets"
)

// PodTopologySpread enforces the pod's DoNotSchedule topology spread
// constraints and scores nodes by its ScheduleAnyway ones. A pod without
// constraints gets the system defaults (ScheduleAnyway, maxSkew 3 over
// hostnames and 5 over zones) with a selector made from the services and
// controllers that select it, when DefaultSelector is set.
type PodTopologySpread struct {
	// DefaultSelector returns the selector of the services, replica sets
	// and stateful sets selecting pod (nil or empty: no default spread).
	DefaultSelector func(pod *corev1.Pod) labels.Selector
}

// Reasons as kube-scheduler words them.
const (
	ErrReasonSpreadConstraintsNotMatch = "node(s) didn't match pod topology spread constraints"
	ErrReasonSpreadMissingLabel        = "node(s) didn't match pod topology spread constraints (missing required label)"
)

const (
	spreadFilterKey = "PodTopologySpread"
	spreadScoreKey  = "PodTopologySpreadScore"
)

func (PodTopologySpread) Name() string { return "PodTopologySpread" }

type spreadConstraint struct {
	MaxSkew        int32
	TopologyKey    string
	Selector       labels.Selector
	MinDomains     int32
	honorAffinity  bool
	honorTaints    bool
	selfMatchCount int64
}

// spreadConstraints parses the pod's constraints with the given action.
func spreadConstraints(pod *corev1.Pod, action corev1.UnsatisfiableConstraintAction) ([]spreadConstraint, error) {
	var out []spreadConstraint
	for _, c := range pod.Spec.TopologySpreadConstraints {
		if c.WhenUnsatisfiable != action {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if err != nil {
			return nil, err
		}
		for _, k := range c.MatchLabelKeys {
			if v, ok := pod.Labels[k]; ok {
				if r, err := labels.NewRequirement(k, selection.In, []string{v}); err == nil {
					sel = sel.Add(*r)
				}
			}
		}
		sc := spreadConstraint{MaxSkew: c.MaxSkew, TopologyKey: c.TopologyKey, Selector: sel, MinDomains: 1,
			honorAffinity: c.NodeAffinityPolicy == nil || *c.NodeAffinityPolicy == corev1.NodeInclusionPolicyHonor,
			honorTaints:   c.NodeTaintsPolicy != nil && *c.NodeTaintsPolicy == corev1.NodeInclusionPolicyHonor}
		if c.MinDomains != nil {
			sc.MinDomains = *c.MinDomains
		}
		out = append(out, sc)
	}
	for i := range out {
		if out[i].Selector.Matches(labels.Set(pod.Labels)) {
			out[i].selfMatchCount = 1
		}
	}
	return out, nil
}

// nodeEligible: the node counts for the constraint's domains (it passes
// the pod's node affinity and taints when the policies say so, and it has
// every constraint's key).
func nodeEligible(node *corev1.Node, pod *corev1.Pod, req *requiredNodeSelector, cs []spreadConstraint) bool {
	if node == nil || !hasKeys(node, cs) {
		return false
	}
	// The policies are per constraint in Kubernetes; a node must pass the
	// strictest one among the constraints.
	for i := range cs {
		if cs[i].honorAffinity && req != nil && !req.Matches(node) {
			return false
		}
		if cs[i].honorTaints {
			for j := range node.Spec.Taints {
				t := &node.Spec.Taints[j]
				if (t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute) &&
					!tolerationsTolerateTaint(pod.Spec.Tolerations, t) {
					return false
				}
			}
		}
	}
	return true
}

func hasKeys(node *corev1.Node, cs []spreadConstraint) bool {
	for i := range cs {
		if _, ok := node.Labels[cs[i].TopologyKey]; !ok {
			return false
		}
	}
	return true
}

// countMatching counts the pods on node in pod's namespace that the
// selector matches, not counting pods being deleted.
func countMatching(node *NodeInfo, ns string, sel labels.Selector) int64 {
	var n int64
	for _, p := range node.Pods {
		if p.Pod.Namespace != ns || p.Pod.DeletionTimestamp != nil {
			continue
		}
		if sel.Matches(labels.Set(p.Pod.Labels)) {
			n++
		}
	}
	return n
}

// spreadFilterState counts matching pods per constraint and domain.
type spreadFilterState struct {
	constraints []spreadConstraint
	// counts[i][value] is the number of matching pods in domain value of
	// constraint i.
	counts []map[string]int64
	req    *requiredNodeSelector
}

func (s *spreadFilterState) Clone() StateData {
	c := &spreadFilterState{constraints: s.constraints, req: s.req, counts: make([]map[string]int64, len(s.counts))}
	for i, m := range s.counts {
		c.counts[i] = make(map[string]int64, len(m))
		for k, v := range m {
			c.counts[i][k] = v
		}
	}
	return c
}

// minMatch is the smallest count over the constraint's domains (zero when
// there are fewer domains than minDomains).
func (s *spreadFilterState) minMatch(i int) int64 {
	m := s.counts[i]
	if int32(len(m)) < s.constraints[i].MinDomains {
		return 0
	}
	lo := int64(math.MaxInt64)
	for _, v := range m {
		lo = min(lo, v)
	}
	if lo == math.MaxInt64 {
		return 0
	}
	return lo
}

func (pl PodTopologySpread) PreFilter(_ context.Context, state *CycleState, pod *PodInfo, snap *Snapshot) *Status {
	cs, err := spreadConstraints(pod.Pod, corev1.DoNotSchedule)
	if err != nil {
		return NewStatus(UnschedulableAndUnresolvable, err.Error())
	}
	if len(cs) == 0 {
		return NewStatus(Skip)
	}
	s := &spreadFilterState{constraints: cs, counts: make([]map[string]int64, len(cs)), req: newRequiredNodeSelector(pod.Pod)}
	for i := range s.counts {
		s.counts[i] = map[string]int64{}
	}
	for _, n := range snap.NodeInfoList {
		node := n.Node()
		if !nodeEligible(node, pod.Pod, s.req, cs) {
			continue
		}
		for i := range cs {
			s.counts[i][node.Labels[cs[i].TopologyKey]] += countMatching(n, pod.Pod.Namespace, cs[i].Selector)
		}
	}
	state.Write(spreadFilterKey, s)
	return nil
}

func (pl PodTopologySpread) AddPod(state *CycleState, pod *PodInfo, add *PodInfo, node *NodeInfo) *Status {
	return pl.update(state, pod, add, node, 1)
}

func (pl PodTopologySpread) RemovePod(state *CycleState, pod *PodInfo, remove *PodInfo, node *NodeInfo) *Status {
	return pl.update(state, pod, remove, node, -1)
}

func (PodTopologySpread) update(state *CycleState, pod, other *PodInfo, node *NodeInfo, sign int64) *Status {
	d, ok := state.Read(spreadFilterKey)
	if !ok {
		return nil
	}
	s := d.(*spreadFilterState)
	n := node.Node()
	if other.Pod.Namespace != pod.Pod.Namespace || !nodeEligible(n, pod.Pod, s.req, s.constraints) {
		return nil
	}
	for i := range s.constraints {
		if s.constraints[i].Selector.Matches(labels.Set(other.Pod.Labels)) {
			s.counts[i][n.Labels[s.constraints[i].TopologyKey]] += sign
		}
	}
	return nil
}

func (PodTopologySpread) Filter(_ context.Context, state *CycleState, pod *PodInfo, node *NodeInfo) *Status {
	d, ok := state.Read(spreadFilterKey)
	if !ok {
		return nil
	}
	s := d.(*spreadFilterState)
	n := node.Node()
	for i := range s.constraints {
		if _, ok := n.Labels[s.constraints[i].TopologyKey]; !ok {
			return NewStatus(UnschedulableAndUnresolvable, ErrReasonSpreadMissingLabel)
		}
	}
	for i := range s.constraints {
		c := &s.constraints[i]
		skew := s.counts[i][n.Labels[c.TopologyKey]] + c.selfMatchCount - s.minMatch(i)
		if skew > int64(c.MaxSkew) {
			return NewStatus(Unschedulable, ErrReasonSpreadConstraintsNotMatch)
		}
	}
	return nil
}

// spreadScoreState is the ScheduleAnyway constraints' domain counts over
// the domains of the feasible nodes.
type spreadScoreState struct {
	constraints []spreadConstraint
	counts      []map[string]int64
	weights     []float64
	ignored     sets.Set[string]
	namespace   string
	requireAll  bool
}

func (s *spreadScoreState) Clone() StateData { return s }

// defaultConstraints are kube-scheduler's system default spreading.
func (pl PodTopologySpread) defaultConstraints(pod *corev1.Pod) []spreadConstraint {
	if pl.DefaultSelector == nil {
		return nil
	}
	sel := pl.DefaultSelector(pod)
	if sel == nil || sel.Empty() {
		return nil
	}
	var out []spreadConstraint
	for _, c := range []struct {
		key  string
		skew int32
	}{{corev1.LabelHostname, 3}, {corev1.LabelTopologyZone, 5}} {
		sc := spreadConstraint{MaxSkew: c.skew, TopologyKey: c.key, Selector: sel, MinDomains: 1, honorAffinity: true}
		if sel.Matches(labels.Set(pod.Labels)) {
			sc.selfMatchCount = 1
		}
		out = append(out, sc)
	}
	return out
}

func (pl PodTopologySpread) PreScore(_ context.Context, state *CycleState, pod *PodInfo, nodes []*NodeInfo, snap *Snapshot) *Status {
	var cs []spreadConstraint
	if len(pod.Pod.Spec.TopologySpreadConstraints) == 0 {
		cs = pl.defaultConstraints(pod.Pod)
	} else {
		var err error
		if cs, err = spreadConstraints(pod.Pod, corev1.ScheduleAnyway); err != nil {
			return AsStatus(err)
		}
	}
	if len(cs) == 0 {
		return NewStatus(Skip)
	}
	s := &spreadScoreState{constraints: cs, counts: make([]map[string]int64, len(cs)), weights: make([]float64, len(cs)),
		ignored: sets.New[string](), namespace: pod.Pod.Namespace}
	for i := range s.counts {
		s.counts[i] = map[string]int64{}
	}
	// Explicit constraints ignore nodes without all their keys; the system
	// defaults only skip the keys a node lacks (nodes without zones).
	requireAll := len(pod.Pod.Spec.TopologySpreadConstraints) > 0
	s.requireAll = requireAll
	hostnames := 0
	for _, n := range nodes {
		node := n.Node()
		if requireAll && !hasKeys(node, cs) {
			s.ignored.Insert(node.Name)
			continue
		}
		hostnames++
		for i := range cs {
			if v, ok := node.Labels[cs[i].TopologyKey]; ok && cs[i].TopologyKey != corev1.LabelHostname {
				s.counts[i][v] = 0
			}
		}
	}
	req := newRequiredNodeSelector(pod.Pod)
	for _, n := range snap.NodeInfoList {
		node := n.Node()
		if requireAll && !nodeEligible(node, pod.Pod, req, cs) {
			continue
		}
		if !requireAll && req != nil && !req.Matches(node) {
			continue
		}
		for i := range cs {
			if cs[i].TopologyKey == corev1.LabelHostname {
				continue // counted per node in Score
			}
			v, ok := node.Labels[cs[i].TopologyKey]
			if !ok {
				continue
			}
			if _, want := s.counts[i][v]; want {
				s.counts[i][v] += countMatching(n, pod.Pod.Namespace, cs[i].Selector)
			}
		}
	}
	for i := range cs {
		size := len(s.counts[i])
		if cs[i].TopologyKey == corev1.LabelHostname {
			size = hostnames
		}
		s.weights[i] = math.Log(float64(size + 2))
	}
	state.Write(spreadScoreKey, s)
	return nil
}

func (PodTopologySpread) Score(_ context.Context, state *CycleState, _ *PodInfo, node *NodeInfo) (int64, *Status) {
	d, _ := state.Read(spreadScoreKey)
	s, _ := d.(*spreadScoreState)
	if s == nil || s.ignored.Has(node.Name()) {
		return 0, nil
	}
	var score float64
	n := node.Node()
	for i := range s.constraints {
		c := &s.constraints[i]
		v, ok := n.Labels[c.TopologyKey]
		if !ok {
			continue
		}
		var cnt int64
		if c.TopologyKey == corev1.LabelHostname {
			cnt = countMatching(node, s.namespace, c.Selector)
		} else {
			cnt = s.counts[i][v]
		}
		score += float64(cnt)*s.weights[i] + float64(c.MaxSkew-1)
	}
	return int64(math.Round(score)), nil
}

// NormalizeScore gives the least crowded nodes MaxNodeScore; ignored
// nodes (missing a topology key) get 0.
func (PodTopologySpread) NormalizeScore(_ context.Context, state *CycleState, _ *PodInfo, scores []NodeScore) *Status {
	d, _ := state.Read(spreadScoreKey)
	s, _ := d.(*spreadScoreState)
	if s == nil {
		return nil
	}
	lo, hi := int64(math.MaxInt64), int64(0)
	for _, sc := range scores {
		if s.ignored.Has(sc.Name) {
			continue
		}
		lo, hi = min(lo, sc.Score), max(hi, sc.Score)
	}
	for i := range scores {
		switch {
		case s.ignored.Has(scores[i].Name):
			scores[i].Score = 0
		case hi == 0:
			scores[i].Score = MaxNodeScore
		default:
			scores[i].Score = MaxNodeScore * (hi + lo - scores[i].Score) / hi
		}
	}
	return nil
}
