package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Code is the outcome of a plugin call, as kube-scheduler's framework
// reports it.
type Code int

const (
	// Success: the node passes (or the plugin did its work).
	Success Code = iota
	// Unschedulable: the pod does not fit the node now, but removing pods
	// from the node (preemption) could change that.
	Unschedulable
	// UnschedulableAndUnresolvable: the node can never take the pod
	// (selector, taints, name): preemption does not try it.
	UnschedulableAndUnresolvable
	// Error: something broke; the attempt fails and the pod is retried.
	Error
	// Skip, from PreFilter or PreScore: the plugin has nothing to say
	// about this pod and its Filter or Score is not called.
	Skip
)

// Status is what a plugin returns. A nil *Status means Success.
type Status struct {
	code    Code
	reasons []string
	err     error
	plugin  string
}

// NewStatus makes a status with reasons (the texts kube-scheduler shows in
// "0/3 nodes are available: ...").
func NewStatus(code Code, reasons ...string) *Status {
	return &Status{code: code, reasons: reasons}
}

// AsStatus wraps an error as an Error status.
func AsStatus(err error) *Status {
	if err == nil {
		return nil
	}
	return &Status{code: Error, err: err, reasons: []string{err.Error()}}
}

// Code returns the status code (Success for nil).
func (s *Status) Code() Code {
	if s == nil {
		return Success
	}
	return s.code
}

// IsSuccess reports a nil or Success status.
func (s *Status) IsSuccess() bool { return s.Code() == Success }

// IsSkip reports a Skip status.
func (s *Status) IsSkip() bool { return s.Code() == Skip }

// IsRejected reports Unschedulable or UnschedulableAndUnresolvable.
func (s *Status) IsRejected() bool {
	c := s.Code()
	return c == Unschedulable || c == UnschedulableAndUnresolvable
}

// Reasons returns the reasons.
func (s *Status) Reasons() []string {
	if s == nil {
		return nil
	}
	return s.reasons
}

// Plugin is the name of the plugin that returned the status.
func (s *Status) Plugin() string {
	if s == nil {
		return ""
	}
	return s.plugin
}

// AsError returns the status as an error (nil unless Error).
func (s *Status) AsError() error {
	if s.Code() != Error {
		return nil
	}
	if s.err != nil {
		return s.err
	}
	return errors.New(strings.Join(s.reasons, ", "))
}

func (s *Status) withPlugin(name string) *Status {
	if s != nil && s.plugin == "" {
		s.plugin = name
	}
	return s
}

func (s *Status) String() string {
	if s == nil {
		return "Success"
	}
	return fmt.Sprintf("%d %s", s.code, strings.Join(s.reasons, ", "))
}

// StateData is one plugin's per-attempt data in a CycleState.
type StateData interface {
	// Clone returns a copy that preemption may change (through
	// PreFilterExtensions) without touching the original.
	Clone() StateData
}

// CycleState carries data from PreFilter and PreScore to Filter and Score
// within one scheduling attempt. It is written by one goroutine (the
// PreFilter and PreScore phases) and only read while filters and scores
// run in parallel, so it needs no lock.
type CycleState struct {
	data map[string]StateData
	// skipFilter and skipScore name plugins that returned Skip; filters
	// lists the filters to run (set after PreFilter).
	skipFilter map[string]bool
	skipScore  map[string]bool
	filters    []FilterPlugin
}

// NewCycleState returns an empty state.
func NewCycleState() *CycleState {
	return &CycleState{data: map[string]StateData{}, skipFilter: map[string]bool{}, skipScore: map[string]bool{}}
}

// Write stores a plugin's data.
func (c *CycleState) Write(key string, d StateData) { c.data[key] = d }

// Read returns a plugin's data.
func (c *CycleState) Read(key string) (StateData, bool) {
	d, ok := c.data[key]
	return d, ok
}

// Clone copies the state (each plugin's data through its Clone).
func (c *CycleState) Clone() *CycleState {
	out := NewCycleState()
	for k, v := range c.data {
		out.data[k] = v.Clone()
	}
	for k, v := range c.skipFilter {
		out.skipFilter[k] = v
	}
	for k, v := range c.skipScore {
		out.skipScore[k] = v
	}
	out.filters = c.filters
	return out
}

// Plugin is a named scheduling plugin.
type Plugin interface {
	Name() string
}

// PreFilterPlugin computes, once per attempt, what the plugin's Filter
// needs. It may reject the pod for every node (a non-nil status with a
// rejection) or return Skip.
type PreFilterPlugin interface {
	Plugin
	PreFilter(ctx context.Context, state *CycleState, pod *PodInfo, snap *Snapshot) *Status
}

// PreFilterExtensions update a plugin's PreFilter state when preemption
// simulates adding or removing a pod on a node.
type PreFilterExtensions interface {
	AddPod(state *CycleState, pod *PodInfo, add *PodInfo, node *NodeInfo) *Status
	RemovePod(state *CycleState, pod *PodInfo, remove *PodInfo, node *NodeInfo) *Status
}

// FilterPlugin decides whether the pod can go to the node.
type FilterPlugin interface {
	Plugin
	Filter(ctx context.Context, state *CycleState, pod *PodInfo, node *NodeInfo) *Status
}

// PreScorePlugin prepares scoring over the feasible nodes; it may Skip.
type PreScorePlugin interface {
	Plugin
	PreScore(ctx context.Context, state *CycleState, pod *PodInfo, nodes []*NodeInfo, snap *Snapshot) *Status
}

// ScorePlugin ranks a feasible node; NormalizeScore (if the plugin has it)
// maps the raw scores to [0, MaxNodeScore].
type ScorePlugin interface {
	Plugin
	Score(ctx context.Context, state *CycleState, pod *PodInfo, node *NodeInfo) (int64, *Status)
}

// ScoreNormalizer is a ScorePlugin whose raw scores need normalizing.
type ScoreNormalizer interface {
	NormalizeScore(ctx context.Context, state *CycleState, pod *PodInfo, scores []NodeScore) *Status
}

// MaxNodeScore is the highest score a plugin gives a node.
const MaxNodeScore int64 = 100

// NodeScore is a node's score from one plugin, or in total.
type NodeScore struct {
	Name  string
	Score int64
}

// weightedScorePlugin is a score plugin with its weight.
type weightedScorePlugin struct {
	ScorePlugin
	weight int64
}

// normalizeScores maps scores to [0, MaxNodeScore] by the highest one
// (reverse: the lowest raw score gets MaxNodeScore), as kube-scheduler's
// DefaultNormalizeScore does.
func normalizeScores(scores []NodeScore, reverse bool) {
	var max int64
	for _, s := range scores {
		if s.Score > max {
			max = s.Score
		}
	}
	if max == 0 {
		if reverse {
			for i := range scores {
				scores[i].Score = MaxNodeScore
			}
		}
		return
	}
	for i := range scores {
		s := MaxNodeScore * scores[i].Score / max
		if reverse {
			s = MaxNodeScore - s
		}
		scores[i].Score = s
	}
}
