package fsmtest_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/fsmtest"
	"github.com/skiff-io/skiff/fsm/state"
)

const waitLimit = 10 * time.Second

func newStore() *fsmtest.FakeRaftStore {
	return fsmtest.NewFakeRaftStore(fsm.Options{Logger: slog.New(slog.DiscardHandler)})
}

func entry(t *testing.T, m fsm.Mutation) []byte {
	t.Helper()
	b, err := fsm.EncodeMutation(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFakeRaftStoreApply(t *testing.T) {
	s := newStore()
	ctx := context.Background()
	k := state.Key{Resource: "configmaps", Namespace: "ns", Name: "a"}
	for i, want := range []fsm.Reason{"", fsm.ReasonAlreadyExists} {
		res, err := s.Apply(ctx, entry(t, fsm.Mutation{Op: fsm.OpCreate, Key: k, UID: "u", Object: []byte(`{}`)}))
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if res.Index != uint64(i+1) {
			t.Fatalf("index %d, want %d", res.Index, i+1)
		}
		if (want == "") != (res.Err == nil) || (res.Err != nil && res.Err.Reason != want) {
			t.Fatalf("result %+v, want reason %q", res.Err, want)
		}
	}
	snap, err := s.Read(ctx, true, 0)
	if err != nil || snap.Get(k) == nil || snap.Index() != 2 {
		t.Fatalf("Read: %v, %v", snap, err)
	}
	w, err := s.Watch(0, fsm.WatchFilter{Resource: k.Resource})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	wctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	if evs, err := w.Next(wctx); err != nil || len(evs) != 1 || evs[0].Object.Key != k {
		t.Fatalf("Next: %v, %v", evs, err)
	}
}

// TestFakeRaftStoreReadWaits: a read at a future index returns once that
// index is applied, even when the entry there changed nothing.
func TestFakeRaftStoreReadWaits(t *testing.T) {
	s := newStore()
	ctx := context.Background()
	k := state.Key{Resource: "configmaps", Namespace: "ns", Name: "a"}
	if _, err := s.Apply(ctx, entry(t, fsm.Mutation{Op: fsm.OpCreate, Key: k, Object: []byte(`{}`)})); err != nil {
		t.Fatal(err)
	}
	type read struct {
		snap *state.Snapshot
		err  error
	}
	done := make(chan read, 1)
	go func() {
		snap, err := s.Read(ctx, false, 2)
		done <- read{snap, err}
	}()
	// Index 2 is a refused create: no watch event, but the index advances.
	if _, err := s.Apply(ctx, entry(t, fsm.Mutation{Op: fsm.OpCreate, Key: k, Object: []byte(`{}`)})); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.snap.Index() < 2 {
			t.Fatalf("Read: index %d, %v", r.snap.Index(), r.err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("Read(minIndex 2) did not return after index 2 was applied")
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Read(cctx, false, 100); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read with a cancelled context: %v", err)
	}
}
