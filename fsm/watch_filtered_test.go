package fsm

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm/state"
)

// filteredHarness applies creates/updates of configmaps at increasing indexes.
type filteredHarness struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func (h *filteredHarness) put(ns, name string) uint64 {
	h.t.Helper()
	k := state.Key{Resource: "configmaps", Namespace: ns, Name: name}
	op := OpCreate
	if h.f.Read().Get(k) != nil {
		op = OpUpdate
	}
	entry, err := EncodeMutation(Mutation{Op: op, Key: k, Object: []byte(fmt.Sprintf(`{"v":%d}`, h.index+1))})
	if err != nil {
		h.t.Fatal(err)
	}
	h.index++
	res := h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: entry}).(*Result)
	if res.Err != nil {
		h.t.Fatal(res.Err)
	}
	return h.index
}

func nextWithin(t *testing.T, w *Watcher, d time.Duration) ([]*Event, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return w.Next(ctx)
}

func TestFilteredWatchWakesOnlyForMatches(t *testing.T) {
	h := &filteredHarness{t: t, f: New(Options{RingSize: 8})}
	h.put("a", "x")
	byName, err := h.f.WatchFiltered(h.index, WatchFilter{Resource: "configmaps", Namespace: "a", Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer byName.Stop()
	byNS, err := h.f.WatchFiltered(h.index, WatchFilter{Resource: "configmaps", Namespace: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer byNS.Stop()

	// Many unrelated writes, more than the ring holds: neither watcher is
	// woken, and neither is expired, since nothing it wanted was dropped.
	for i := 0; i < 20; i++ {
		h.put("a", fmt.Sprintf("other-%d", i))
	}
	if len(byName.wakeCh) != 0 || len(byNS.wakeCh) != 0 {
		t.Fatalf("woken by unrelated events")
	}
	idx := h.put("a", "x")
	evs, err := nextWithin(t, byName, time.Second)
	if err != nil || len(evs) != 1 || evs[0].Index != idx || evs[0].Object.Key.Name != "x" {
		t.Fatalf("name watch: %v %+v", err, evs)
	}
	if _, err := nextWithin(t, byNS, 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("namespace watch without matches: %v", err)
	}
	if byNS.Cursor() != idx {
		t.Fatalf("cursor %d, want %d (moved past scanned events)", byNS.Cursor(), idx)
	}
	idx = h.put("b", "y")
	evs, err = nextWithin(t, byNS, time.Second)
	if err != nil || len(evs) != 1 || evs[0].Index != idx {
		t.Fatalf("namespace watch: %v %+v", err, evs)
	}
}

// A matching event that falls out of the ring before the watcher reads it
// is reported as expired, never skipped.
func TestFilteredWatchExpiresWhenAMatchIsLost(t *testing.T) {
	h := &filteredHarness{t: t, f: New(Options{RingSize: 4})}
	h.put("a", "x")
	w, err := h.f.WatchFiltered(h.index, WatchFilter{Resource: "configmaps", Namespace: "a", Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	h.put("a", "x")
	for i := 0; i < 10; i++ {
		h.put("a", fmt.Sprintf("other-%d", i))
	}
	if _, err := nextWithin(t, w, time.Second); !errors.Is(err, ErrExpired) {
		t.Fatalf("want ErrExpired, got %v", err)
	}
	// A match already in the ring when the watcher starts counts too.
	start := h.index
	h.put("q", "m")
	w2, err := h.f.WatchFiltered(start, WatchFilter{Resource: "configmaps", Namespace: "q"})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	for i := 0; i < 10; i++ {
		h.put("a", fmt.Sprintf("more-%d", i))
	}
	if _, err := nextWithin(t, w2, time.Second); !errors.Is(err, ErrExpired) {
		t.Fatalf("match present at start then lost: want ErrExpired, got %v", err)
	}
	// Without any match, a watcher whose start fell out of the ring is not
	// expired and gets the next match.
	w3, err := h.f.WatchFiltered(h.index, WatchFilter{Resource: "configmaps", Namespace: "z"})
	if err != nil {
		t.Fatal(err)
	}
	defer w3.Stop()
	for i := 0; i < 10; i++ {
		h.put("a", fmt.Sprintf("again-%d", i))
	}
	idx := h.put("z", "n")
	if evs, err := nextWithin(t, w3, time.Second); err != nil || len(evs) != 1 || evs[0].Index != idx {
		t.Fatalf("watcher without lost matches: %v %+v", err, evs)
	}
}

func TestFilteredWatchRestoreAndStop(t *testing.T) {
	h := &filteredHarness{t: t, f: New(Options{})}
	h.put("a", "x")
	w, err := h.f.WatchFiltered(h.index, WatchFilter{Resource: "configmaps"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := nextWithin(t, w, 5*time.Second)
		done <- err
	}()
	h.f.ring.reset(h.index)
	if err := <-done; !errors.Is(err, ErrExpired) {
		t.Fatalf("after restore: %v", err)
	}
	w.Stop()
	if len(h.f.ring.byResource) != 0 || len(h.f.ring.byName) != 0 {
		t.Fatalf("Stop left registrations: %v %v", h.f.ring.byResource, h.f.ring.byName)
	}
}
