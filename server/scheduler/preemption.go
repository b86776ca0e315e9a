package scheduler

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Preemption texts, as kube-scheduler's DefaultPreemption words them.
const (
	reasonPreemptionNotHelpful = "Preemption is not helpful for scheduling"
	reasonNoVictims            = "No preemption victims found for incoming pod"
)

// Candidate counts: at least 100 nodes, or 10% of the potential ones, are
// examined for victims.
const (
	minCandidateNodes           = 100
	minCandidateNodesPercentage = 10
)

// preemptionResult is the node nominated for a pod and the pods to evict
// from it, or the reason there is none.
type preemptionResult struct {
	Node    string
	Victims []*PodInfo
	// Msg is preemption's account for the FitError when no node was found.
	Msg string
}

type candidate struct {
	node    string
	victims []*PodInfo
}

// preempt looks for a node where evicting lower-priority pods makes room
// for pod (kube-scheduler's DefaultPreemption PostFilter, without
// PodDisruptionBudget accounting).
func (a *algorithm) preempt(ctx context.Context, state *CycleState, pod *PodInfo, snap *Snapshot, diag Diagnosis) preemptionResult {
	if p := pod.Pod.Spec.PreemptionPolicy; p != nil && *p == corev1.PreemptNever {
		return preemptionResult{Msg: "preemption: not eligible due to preemptionPolicy=Never."}
	}
	if nom := pod.Pod.Status.NominatedNodeName; nom != "" {
		if ni := snap.Get(nom); ni != nil {
			for _, p := range ni.Pods {
				if p.Pod.DeletionTimestamp != nil && p.Priority < pod.Priority {
					return preemptionResult{Msg: "preemption: not eligible due to a terminating pod on the nominated node."}
				}
			}
		}
	}
	statuses := map[string]*Status{}
	var potential []*NodeInfo
	for _, ni := range snap.NodeInfoList {
		st := diag.NodeToStatus[ni.Name()]
		if st.Code() == Unschedulable {
			potential = append(potential, ni)
			continue
		}
		statuses[ni.Name()] = NewStatus(UnschedulableAndUnresolvable, reasonPreemptionNotHelpful)
	}
	var cands []candidate
	if len(potential) > 0 {
		cands = a.findCandidates(ctx, state, pod, snap, potential, statuses)
	}
	if len(cands) == 0 {
		fe := &FitError{NumAllNodes: snap.NumNodes(), Diagnosis: Diagnosis{NodeToStatus: statuses}}
		return preemptionResult{Msg: "preemption: " + fe.Error()}
	}
	best := pickCandidate(cands)
	return preemptionResult{Node: best.node, Victims: best.victims}
}

// findCandidates simulates preemption on the potential nodes, in parallel,
// until enough candidates are found; failures go into statuses.
func (a *algorithm) findCandidates(ctx context.Context, state *CycleState, pod *PodInfo, snap *Snapshot, potential []*NodeInfo, statuses map[string]*Status) []candidate {
	want := max(minCandidateNodes, len(potential)*minCandidateNodesPercentage/100)
	want = min(want, len(potential))
	a.mu.Lock()
	offset := a.rand.IntN(len(potential))
	a.mu.Unlock()
	var (
		mu    sync.Mutex
		cands []candidate
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.fwk.parallelize(ctx, len(potential), func(i int) {
		ni := potential[(offset+i)%len(potential)]
		victims, st := a.selectVictims(ctx, state, pod, ni, snap.Nominated[ni.Name()])
		mu.Lock()
		defer mu.Unlock()
		if !st.IsSuccess() {
			statuses[ni.Name()] = st
			return
		}
		cands = append(cands, candidate{node: ni.Name(), victims: victims})
		if len(cands) >= want {
			cancel()
		}
	})
	return cands
}

// selectVictims finds the fewest, least important lower-priority pods of
// node whose removal lets pod fit: remove them all, check the pod fits,
// then add them back most important first while it still fits.
func (a *algorithm) selectVictims(ctx context.Context, state *CycleState, pod *PodInfo, node *NodeInfo, nominated []*PodInfo) ([]*PodInfo, *Status) {
	var potential []*PodInfo
	for _, p := range node.Pods {
		if p.Priority < pod.Priority {
			potential = append(potential, p)
		}
	}
	if len(potential) == 0 {
		return nil, NewStatus(UnschedulableAndUnresolvable, reasonNoVictims)
	}
	node = node.Clone()
	state = state.Clone()
	for _, p := range potential {
		node.RemovePod(p.Pod.UID)
		if st := a.fwk.RunRemovePod(state, pod, p, node); !st.IsSuccess() {
			return nil, st
		}
	}
	if st := a.fwk.RunFilterWithNominated(ctx, state, pod, node, nominated); !st.IsSuccess() {
		return nil, st
	}
	sort.SliceStable(potential, func(i, j int) bool { return moreImportant(potential[i], potential[j]) })
	var victims []*PodInfo
	for _, p := range potential {
		node.AddPod(p)
		if st := a.fwk.RunAddPod(state, pod, p, node); !st.IsSuccess() {
			return nil, st
		}
		if a.fwk.RunFilterWithNominated(ctx, state, pod, node, nominated).IsSuccess() {
			continue // reprieved
		}
		node.RemovePod(p.Pod.UID)
		if st := a.fwk.RunRemovePod(state, pod, p, node); !st.IsSuccess() {
			return nil, st
		}
		victims = append(victims, p)
	}
	return victims, nil
}

// moreImportant: higher priority, then the one that started earlier.
func moreImportant(a, b *PodInfo) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return podStartTime(a.Pod).Before(podStartTime(b.Pod))
}

func podStartTime(p *corev1.Pod) time.Time {
	if p.Status.StartTime != nil {
		return p.Status.StartTime.Time
	}
	return p.CreationTimestamp.Time
}

// pickCandidate chooses among candidates as kube-scheduler does: a node
// needing no victims; else the lowest highest-victim priority; the lowest
// sum of victim priorities; the fewest victims; the latest start of the
// highest-priority victims; the first.
func pickCandidate(cands []candidate) candidate {
	for _, c := range cands {
		if len(c.victims) == 0 {
			return c
		}
	}
	highest := func(c candidate) int32 {
		h := int32(math.MinInt32)
		for _, v := range c.victims {
			h = max(h, v.Priority)
		}
		return h
	}
	sum := func(c candidate) int64 {
		var s int64
		for _, v := range c.victims {
			s += int64(v.Priority) + math.MaxInt32 + 1 // keep negative priorities ordered
		}
		return s
	}
	earliestOfHighest := func(c candidate) time.Time {
		h := highest(c)
		var t time.Time
		for _, v := range c.victims {
			if v.Priority == h && (t.IsZero() || podStartTime(v.Pod).Before(t)) {
				t = podStartTime(v.Pod)
			}
		}
		return t
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if ha, hb := highest(a), highest(b); ha != hb {
			return ha < hb
		}
		if sa, sb := sum(a), sum(b); sa != sb {
			return sa < sb
		}
		if len(a.victims) != len(b.victims) {
			return len(a.victims) < len(b.victims)
		}
		if ta, tb := earliestOfHighest(a), earliestOfHighest(b); !ta.Equal(tb) {
			return ta.After(tb)
		}
		return a.node < b.node
	})
	return cands[0]
}

// describeVictims is a log helper.
func describeVictims(v []*PodInfo) string {
	s := ""
	for i, p := range v {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s/%s(%d)", p.Pod.Namespace, p.Pod.Name, p.Priority)
	}
	return s
}
