// Package fsmtest has test helpers for code that sits on the FSM.
package fsmtest

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
)

// FakeRaftStore applies entries straight to an FSM with increasing indexes,
// in-process and without Raft. It satisfies apiserver.Store for unit tests;
// the real store is server's Raft-backed one.
type FakeRaftStore struct {
	FSM *fsm.FSM

	mu    sync.Mutex
	index uint64
}

// NewFakeRaftStore returns a store over a new FSM.
func NewFakeRaftStore(opts fsm.Options) *FakeRaftStore {
	return &FakeRaftStore{FSM: fsm.New(opts)}
}

// Read returns the current state (every read is linearizable here).
func (s *FakeRaftStore) Read(ctx context.Context, linearizable bool, minIndex uint64) (*state.Snapshot, error) {
	for {
		snap := s.FSM.Read()
		if snap.Index() >= minIndex {
			return snap, nil
		}
		ch := s.FSM.Changed()
		if s.FSM.Read().Index() >= minIndex {
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// Apply applies entry at the next index.
func (s *FakeRaftStore) Apply(ctx context.Context, entry []byte) (*fsm.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	out := s.FSM.Apply(&raft.Log{Index: s.index, Term: 1, Type: raft.LogCommand, Data: entry})
	res, ok := out.(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("fake raft store: unexpected apply response %T", out)
	}
	return res, nil
}

// Watch watches the FSM.
func (s *FakeRaftStore) Watch(index uint64, filter fsm.WatchFilter) (*fsm.Watcher, error) {
	return s.FSM.WatchFiltered(index, filter)
}
