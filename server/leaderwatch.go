package server

import (
	"context"
	"sync"

	"github.com/hashicorp/raft"
)

// leaderWatch turns Raft's leader observations into a channel that is closed
// at the next change of leader, so that a request in flight to an old leader
// (stopped, or cut off) is abandoned as soon as another is known, instead of
// waiting for its timeout.
type leaderWatch struct {
	mu sync.Mutex
	ch chan struct{}
}

func newLeaderWatch() *leaderWatch { return &leaderWatch{ch: make(chan struct{})} }

// changed returns a channel closed at the next leader change.
func (w *leaderWatch) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

func (w *leaderWatch) notify() {
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}

// run forwards observations until stop is closed.
func (w *leaderWatch) run(r *raft.Raft, stop <-chan struct{}) {
	obs := make(chan raft.Observation, 16)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(o)
	defer r.DeregisterObserver(o)
	for {
		select {
		case <-stop:
			return
		case <-obs:
			w.notify()
		}
	}
}

// untilLeaderChanges returns a context that ends with parent or when the
// leader changes.
func (s *Server) untilLeaderChanges(parent context.Context) (context.Context, context.CancelFunc) {
	ch := s.leaderWatch.changed()
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
