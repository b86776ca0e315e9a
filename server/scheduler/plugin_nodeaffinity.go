package scheduler

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiff-io/skiff/server/controller"
)

// NodeAffinity filters nodes by the pod's nodeSelector and required node
// affinity, and scores them by its preferred node affinity terms.
type NodeAffinity struct{}

// ErrReasonNodeAffinity is kube-scheduler's text for a node the selector
// or the required affinity excludes.
const ErrReasonNodeAffinity = "node(s) didn't match Pod's node affinity/selector"

const nodeAffinityKey = "NodeAffinity"

func (NodeAffinity) Name() string { return "NodeAffinity" }

// nodeAffinityState holds the parsed required selector (PreFilter) or the
// parsed preferred terms (PreScore).
type nodeAffinityState struct {
	required  *requiredNodeSelector
	preferred []weightedNodeTerm
}

func (s *nodeAffinityState) Clone() StateData { return s }

type weightedNodeTerm struct {
	term   nodeSelectorTerm
	weight int64
}

func (NodeAffinity) PreFilter(_ context.Context, state *CycleState, pod *PodInfo, _ *Snapshot) *Status {
	req := newRequiredNodeSelector(pod.Pod)
	if req == nil {
		return NewStatus(Skip)
	}
	state.Write(nodeAffinityKey, &nodeAffinityState{required: req})
	return nil
}

func (NodeAffinity) Filter(_ context.Context, state *CycleState, pod *PodInfo, node *NodeInfo) *Status {
	d, ok := state.Read(nodeAffinityKey)
	var req *requiredNodeSelector
	if ok {
		req = d.(*nodeAffinityState).required
	} else {
		req = newRequiredNodeSelector(pod.Pod)
	}
	if req != nil && !req.Matches(node.Node()) {
		return NewStatus(UnschedulableAndUnresolvable, ErrReasonNodeAffinity)
	}
	return nil
}

const nodeAffinityScoreKey = "NodeAffinityScore"

func (NodeAffinity) PreScore(_ context.Context, state *CycleState, pod *PodInfo, _ []*NodeInfo, _ *Snapshot) *Status {
	aff := pod.Pod.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil || len(aff.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
		return NewStatus(Skip)
	}
	s := &nodeAffinityState{}
	for _, p := range aff.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		if p.Weight == 0 {
			continue
		}
		s.preferred = append(s.preferred, weightedNodeTerm{term: newNodeSelectorTerm(&p.Preference), weight: int64(p.Weight)})
	}
	state.Write(nodeAffinityScoreKey, s)
	return nil
}

func (NodeAffinity) Score(_ context.Context, state *CycleState, _ *PodInfo, node *NodeInfo) (int64, *Status) {
	d, _ := state.Read(nodeAffinityScoreKey)
	s, _ := d.(*nodeAffinityState)
	if s == nil {
		return 0, nil
	}
	var score int64
	for _, p := range s.preferred {
		if p.term.Matches(node.Node()) {
			score += p.weight
		}
	}
	return score, nil
}

func (NodeAffinity) NormalizeScore(_ context.Context, _ *CycleState, _ *PodInfo, scores []NodeScore) *Status {
	normalizeScores(scores, false)
	return nil
}

// requiredNodeSelector is a pod's nodeSelector and required node affinity.
type requiredNodeSelector struct {
	selector labels.Selector // nil: no nodeSelector
	// terms are ORed; nil terms with hasTerms means "matches nothing".
	terms    []nodeSelectorTerm
	hasTerms bool
}

// newRequiredNodeSelector parses the pod's node constraints, or returns
// nil when it has none.
func newRequiredNodeSelector(pod *corev1.Pod) *requiredNodeSelector {
	r := &requiredNodeSelector{}
	if len(pod.Spec.NodeSelector) > 0 {
		r.selector = labels.SelectorFromSet(pod.Spec.NodeSelector)
	}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		r.hasTerms = true
		for i := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			r.terms = append(r.terms, newNodeSelectorTerm(&a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[i]))
		}
	}
	if r.selector == nil && !r.hasTerms {
		return nil
	}
	return r
}

// Matches reports whether node satisfies the selector and one term.
func (r *requiredNodeSelector) Matches(node *corev1.Node) bool {
	if node == nil {
		return false
	}
	if r.selector != nil && !r.selector.Matches(labels.Set(node.Labels)) {
		return false
	}
	if !r.hasTerms {
		return true
	}
	for i := range r.terms {
		if r.terms[i].Matches(node) {
			return true
		}
	}
	return false
}

// nodeSelectorTerm is a parsed NodeSelectorTerm: label requirements ANDed
// with metadata.name field requirements. A term without requirements, or
// with one that does not parse, matches nothing.
type nodeSelectorTerm struct {
	labels  labels.Selector
	fields  []fieldRequirement
	invalid bool
}

type fieldRequirement struct {
	in     bool
	values []string
}

func newNodeSelectorTerm(t *corev1.NodeSelectorTerm) nodeSelectorTerm {
	var out nodeSelectorTerm
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		out.invalid = true
		return out
	}
	sel := labels.NewSelector()
	for _, e := range t.MatchExpressions {
		r, err := controller.NodeSelectorRequirement(e)
		if err != nil {
			out.invalid = true
			return out
		}
		sel = sel.Add(*r)
	}
	out.labels = sel
	for _, f := range t.MatchFields {
		if f.Key != "metadata.name" || (f.Operator != corev1.NodeSelectorOpIn && f.Operator != corev1.NodeSelectorOpNotIn) {
			out.invalid = true
			return out
		}
		out.fields = append(out.fields, fieldRequirement{in: f.Operator == corev1.NodeSelectorOpIn, values: f.Values})
	}
	return out
}

func (t *nodeSelectorTerm) Matches(node *corev1.Node) bool {
	if t.invalid || node == nil {
		return false
	}
	if !t.labels.Matches(labels.Set(node.Labels)) {
		return false
	}
	for _, f := range t.fields {
		found := false
		for _, v := range f.values {
			if v == node.Name {
				found = true
				break
			}
		}
		if found != f.in {
			return false
		}
	}
	return true
}
