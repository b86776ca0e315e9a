package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// ErrNoNodesAvailable is kube-scheduler's error when the cluster has no
// nodes.
var ErrNoNodesAvailable = errors.New("no nodes available to schedule pods")

// Diagnosis records why each node was rejected.
type Diagnosis struct {
	NodeToStatus map[string]*Status
	// Plugins that rejected at least one node.
	Plugins map[string]bool
	// PreFilterMsg is set when a PreFilter rejected the pod for all nodes.
	PreFilterMsg string
	// PostFilterMsg is preemption's account ("preemption: ...").
	PostFilterMsg string
}

// FitError is a pod that fits no node.
type FitError struct {
	NumAllNodes int
	Diagnosis   Diagnosis
}

// Error words the failure as kube-scheduler does:
// "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match
// Pod's node affinity/selector. preemption: 0/3 nodes are available: 3
// Preemption is not helpful for scheduling."
func (f *FitError) Error() string {
	msg := fmt.Sprintf("0/%d nodes are available:", f.NumAllNodes)
	if f.Diagnosis.PreFilterMsg != "" {
		msg += " " + f.Diagnosis.PreFilterMsg + "."
	} else {
		counts := map[string]int{}
		for _, st := range f.Diagnosis.NodeToStatus {
			for _, r := range st.Reasons() {
				counts[r]++
			}
		}
		msg += " " + histogram(counts) + "."
	}
	if f.Diagnosis.PostFilterMsg != "" {
		msg += " " + f.Diagnosis.PostFilterMsg
	}
	return msg
}

// histogram renders "N reason" items, sorted as strings, comma-separated.
func histogram(counts map[string]int) string {
	items := make([]string, 0, len(counts))
	for r, n := range counts {
		items = append(items, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(items)
	return strings.Join(items, ", ")
}

// minFeasibleNodesToFind and the percentage bounds are kube-scheduler's:
// in a large cluster it stops filtering once it has found enough feasible
// nodes (50% of the nodes for small clusters, shrinking by 1% per 125
// nodes, at least 5%, at least 100 nodes).
const (
	minFeasibleNodesToFind           = 100
	minFeasibleNodesPercentageToFind = 5
)

// numFeasibleNodesToFind is how many feasible nodes an attempt looks for;
// percentage 0 is adaptive.
func numFeasibleNodesToFind(numAll, percentage int) int {
	if numAll < minFeasibleNodesToFind || percentage >= 100 {
		return numAll
	}
	if percentage <= 0 {
		percentage = 50 - numAll/125
		if percentage < minFeasibleNodesPercentageToFind {
			percentage = minFeasibleNodesPercentageToFind
		}
	}
	n := numAll * percentage / 100
	if n < minFeasibleNodesToFind {
		return minFeasibleNodesToFind
	}
	return n
}

// algorithm picks a node for one pod over a snapshot.
type algorithm struct {
	fwk        *Framework
	percentage int
	// nextStart rotates the first node examined, so that sampling covers
	// every node over successive attempts.
	nextStart int
	// statuses is findFeasible's buffer, reused (attempts run one at a
	// time).
	statuses []*Status
	rand     *rand.Rand
	mu       sync.Mutex // guards rand
}

func newAlgorithm(fwk *Framework, percentage int) *algorithm {
	return &algorithm{fwk: fwk, percentage: percentage, rand: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// scheduleResult is the chosen node and how many nodes were looked at.
type scheduleResult struct {
	Node      string
	Evaluated int
	Feasible  int
}

// schedule filters and scores the nodes for pod. A pod that fits nowhere
// gets a *FitError.
func (a *algorithm) schedule(ctx context.Context, state *CycleState, pod *PodInfo, snap *Snapshot) (scheduleResult, error) {
	n := snap.NumNodes()
	if n == 0 {
		return scheduleResult{}, ErrNoNodesAvailable
	}
	if st := a.fwk.RunPreFilter(ctx, state, pod, snap); !st.IsSuccess() {
		if st.Code() == Error {
			return scheduleResult{}, st.AsError()
		}
		diag := Diagnosis{NodeToStatus: map[string]*Status{}, Plugins: map[string]bool{st.Plugin(): true},
			PreFilterMsg: strings.Join(st.Reasons(), ", ")}
		for _, ni := range snap.NodeInfoList {
			diag.NodeToStatus[ni.Name()] = st
		}
		return scheduleResult{}, &FitError{NumAllNodes: n, Diagnosis: diag}
	}
	feasible, diag, err := a.findFeasible(ctx, state, pod, snap)
	if err != nil {
		return scheduleResult{}, err
	}
	if len(feasible) == 0 {
		return scheduleResult{}, &FitError{NumAllNodes: n, Diagnosis: diag}
	}
	res := scheduleResult{Evaluated: len(feasible) + len(diag.NodeToStatus), Feasible: len(feasible)}
	if len(feasible) == 1 {
		res.Node = feasible[0].Name()
		return res, nil
	}
	scores, st := a.fwk.RunScore(ctx, state, pod, feasible, snap)
	if !st.IsSuccess() {
		return scheduleResult{}, st.AsError()
	}
	res.Node = a.selectHost(scores)
	return res, nil
}

// findFeasible runs the filters over the nodes in parallel, starting at
// nextStart, until enough feasible nodes are found.
func (a *algorithm) findFeasible(ctx context.Context, state *CycleState, pod *PodInfo, snap *Snapshot) ([]*NodeInfo, Diagnosis, error) {
	all := snap.NodeInfoList
	n := len(all)
	want := numFeasibleNodesToFind(n, a.percentage)
	feasible := make([]*NodeInfo, want)
	if cap(a.statuses) < n {
		a.statuses = make([]*Status, n)
	}
	statuses := a.statuses[:n]
	defer clear(statuses)
	var (
		found     atomic.Int32
		processed atomic.Int32
		errMu     sync.Mutex
		firstErr  error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := a.nextStart % n
	check := func(i int) {
		idx := (start + i) % n
		ni := all[idx]
		var nominated []*PodInfo
		if len(snap.Nominated) > 0 {
			nominated = snap.Nominated[ni.Name()]
		}
		st := a.fwk.RunFilterWithNominated(ctx, state, pod, ni, nominated)
		switch {
		case st.IsSuccess():
			k := found.Add(1)
			if int(k) > want {
				cancel()
				return
			}
			feasible[k-1] = ni
		case st.Code() == Error:
			errMu.Lock()
			if firstErr == nil {
				firstErr = st.AsError()
			}
			errMu.Unlock()
			cancel()
		default:
			statuses[idx] = st
		}
		processed.Add(1)
	}
	a.fwk.parallelize(ctx, n, check)
	if firstErr != nil {
		return nil, Diagnosis{}, firstErr
	}
	a.nextStart = (start + int(processed.Load())) % n
	k := min(int(found.Load()), want)
	feasible = feasible[:k]
	diag := Diagnosis{NodeToStatus: map[string]*Status{}, Plugins: map[string]bool{}}
	for idx, st := range statuses {
		if st != nil {
			diag.NodeToStatus[all[idx].Name()] = st
			diag.Plugins[st.Plugin()] = true
		}
	}
	return feasible, diag, nil
}

// selectHost picks the highest score; ties are broken at random
// (reservoir sampling).
func (a *algorithm) selectHost(scores []NodeScore) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	best, ties := 0, 1
	for i := 1; i < len(scores); i++ {
		switch {
		case scores[i].Score > scores[best].Score:
			best, ties = i, 1
		case scores[i].Score == scores[best].Score:
			ties++
			if a.rand.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return scores[best].Name
}
