package scheduler

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/workqueue"
)

// Framework runs the plugins of one scheduling profile in kube-scheduler's
// order.
type Framework struct {
	preFilters  []PreFilterPlugin
	filters     []FilterPlugin
	preScores   []PreScorePlugin
	scores      []weightedScorePlugin
	extensions  []namedExtensions
	parallelism int
}

type namedExtensions struct {
	name string
	PreFilterExtensions
}

// NewDefaultFramework returns kube-scheduler's default plugin set and
// score weights. defaultSelector feeds the system default topology spread
// (nil: none).
func NewDefaultFramework(defaultSelector func(*corev1.Pod) labels.Selector, parallelism int) *Framework {
	if parallelism <= 0 {
		parallelism = runtime.GOMAXPROCS(0)
	}
	spread := PodTopologySpread{DefaultSelector: defaultSelector}
	f := &Framework{parallelism: parallelism}
	f.add(NodeUnschedulable{}, NodeName{}, TaintToleration{}, NodeAffinity{}, NodePorts{}, NodeResourcesFit{}, spread, InterPodAffinity{})
	f.scores = []weightedScorePlugin{
		{TaintToleration{}, 3},
		{NodeAffinity{}, 2},
		{spread, 2},
		{InterPodAffinity{}, 2},
		{NodeResourcesLeastAllocated{}, 1},
		{NodeResourcesBalancedAllocation{}, 1},
		{ImageLocality{}, 1},
	}
	for _, s := range f.scores {
		if p, ok := s.ScorePlugin.(PreScorePlugin); ok {
			f.preScores = append(f.preScores, p)
		}
	}
	return f
}

// add registers filter plugins (with their PreFilter and extensions).
func (f *Framework) add(plugins ...FilterPlugin) {
	for _, p := range plugins {
		f.filters = append(f.filters, p)
		if pf, ok := p.(PreFilterPlugin); ok {
			f.preFilters = append(f.preFilters, pf)
		}
		if ext, ok := p.(PreFilterExtensions); ok {
			f.extensions = append(f.extensions, namedExtensions{p.Name(), ext})
		}
	}
}

// RunPreFilter runs every PreFilter; a rejection ends the attempt for
// every node.
func (f *Framework) RunPreFilter(ctx context.Context, state *CycleState, pod *PodInfo, snap *Snapshot) *Status {
	for _, p := range f.preFilters {
		st := p.PreFilter(ctx, state, pod, snap)
		switch {
		case st.IsSkip():
			state.skipFilter[p.Name()] = true
		case !st.IsSuccess():
			return st.withPlugin(p.Name())
		}
	}
	state.filters = f.activeFilters(state)
	return nil
}

// activeFilters lists the filters whose PreFilter did not Skip.
func (f *Framework) activeFilters(state *CycleState) []FilterPlugin {
	out := make([]FilterPlugin, 0, len(f.filters))
	for _, p := range f.filters {
		if !state.skipFilter[p.Name()] {
			out = append(out, p)
		}
	}
	return out
}

// RunFilter runs the filters on one node and returns the first rejection.
func (f *Framework) RunFilter(ctx context.Context, state *CycleState, pod *PodInfo, node *NodeInfo) *Status {
	filters := state.filters
	if filters == nil {
		filters = f.activeFilters(state)
	}
	for _, p := range filters {
		if st := p.Filter(ctx, state, pod, node); !st.IsSuccess() {
			return st.withPlugin(p.Name())
		}
	}
	return nil
}

// RunFilterWithNominated runs the filters with the pods nominated to the
// node (by preemption) that have at least the pod's priority counted as
// if they ran there, so that a preemptor's room is kept for it.
func (f *Framework) RunFilterWithNominated(ctx context.Context, state *CycleState, pod *PodInfo, node *NodeInfo, nominated []*PodInfo) *Status {
	var add []*PodInfo
	for _, np := range nominated {
		if np.Pod.UID != pod.Pod.UID && np.Priority >= pod.Priority {
			add = append(add, np)
		}
	}
	if len(add) == 0 {
		return f.RunFilter(ctx, state, pod, node)
	}
	node = node.Clone()
	state = state.Clone()
	for _, np := range add {
		node.AddPod(np)
		if st := f.RunAddPod(state, pod, np, node); !st.IsSuccess() {
			return st
		}
	}
	return f.RunFilter(ctx, state, pod, node)
}

// RunAddPod and RunRemovePod update the PreFilter states when preemption
// simulates a pod joining or leaving node.
func (f *Framework) RunAddPod(state *CycleState, pod, add *PodInfo, node *NodeInfo) *Status {
	for _, e := range f.extensions {
		if state.skipFilter[e.name] {
			continue
		}
		if st := e.AddPod(state, pod, add, node); !st.IsSuccess() {
			return st
		}
	}
	return nil
}

func (f *Framework) RunRemovePod(state *CycleState, pod, remove *PodInfo, node *NodeInfo) *Status {
	for _, e := range f.extensions {
		if state.skipFilter[e.name] {
			continue
		}
		if st := e.RemovePod(state, pod, remove, node); !st.IsSuccess() {
			return st
		}
	}
	return nil
}

// RunScore scores the feasible nodes: every plugin's scores, normalized,
// times its weight, summed per node.
func (f *Framework) RunScore(ctx context.Context, state *CycleState, pod *PodInfo, nodes []*NodeInfo, snap *Snapshot) ([]NodeScore, *Status) {
	for _, p := range f.preScores {
		st := p.PreScore(ctx, state, pod, nodes, snap)
		switch {
		case st.IsSkip():
			state.skipScore[p.Name()] = true
		case !st.IsSuccess():
			return nil, st.withPlugin(p.Name())
		}
	}
	var active []weightedScorePlugin
	for _, s := range f.scores {
		if !state.skipScore[s.Name()] {
			active = append(active, s)
		}
	}
	perPlugin := make([][]NodeScore, len(active))
	for i := range perPlugin {
		perPlugin[i] = make([]NodeScore, len(nodes))
	}
	var (
		errMu    sync.Mutex
		firstErr error
	)
	score := func(i int) {
		n := nodes[i]
		for j, s := range active {
			v, st := s.Score(ctx, state, pod, n)
			if !st.IsSuccess() {
				errMu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", s.Name(), st.AsError())
				}
				errMu.Unlock()
			}
			perPlugin[j][i] = NodeScore{Name: n.Name(), Score: v}
		}
	}
	f.parallelize(ctx, len(nodes), score)
	if firstErr != nil {
		return nil, AsStatus(firstErr)
	}
	total := make([]NodeScore, len(nodes))
	for i, n := range nodes {
		total[i].Name = n.Name()
	}
	for j, s := range active {
		if nz, ok := s.ScorePlugin.(ScoreNormalizer); ok {
			if st := nz.NormalizeScore(ctx, state, pod, perPlugin[j]); !st.IsSuccess() {
				return nil, st.withPlugin(s.Name())
			}
		}
		for i := range total {
			total[i].Score += perPlugin[j][i].Score * s.weight
		}
	}
	return total, nil
}

// parallelize runs fn(0..n-1), on several goroutines when n is large
// enough to be worth it.
func (f *Framework) parallelize(ctx context.Context, n int, fn func(i int)) {
	if n < 64 || f.parallelism <= 1 {
		for i := 0; i < n && ctx.Err() == nil; i++ {
			fn(i)
		}
		return
	}
	chunk := max(1, n/(f.parallelism*4))
	workqueue.ParallelizeUntil(ctx, f.parallelism, n, fn, workqueue.WithChunkSize(chunk))
}
