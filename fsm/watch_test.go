package fsm_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
)

// mixedLog applies a run of entries that produce zero, one and several
// events per index, and returns every event in order.
func mixedLog(t *testing.T, h *harness) []string {
	t.Helper()
	var want []string
	record := func(res *fsm.Result, types ...fsm.EventType) {
		t.Helper()
		wantOK(t, res)
		for i, o := range res.Objects {
			line := fmt.Sprintf("%s %d %s uid=%s c=%d m=%d %s", types[i], res.Index, o.Key, o.UID, o.CreateIndex, o.ModifyIndex, o.Data)
			want = append(want, line)
		}
	}
	a, b, c := cmKey("ns", "a"), cmKey("ns", "b"), cmKey("other", "c")
	record(h.mutate(createM(a, "uid-a", cmJSON("ns", "a", "1"))), fsm.Added)
	record(h.batch(createM(b, "uid-b", `{"b":1}`), createM(c, "uid-c", `{"c":1}`), updateM(a, `{"a":2}`, nil)), fsm.Added, fsm.Added, fsm.Modified)
	h.mutate(createM(a, "uid-x", `{}`)) // refused: no event
	h.skip()                            // not a command: no event
	record(h.mutate(statusM(b, `{"phase":"x"}`, nil)), fsm.Modified)
	h.batch(createM(cmKey("ns", "d"), "", `{}`), deleteM(cmKey("ns", "missing"), nil)) // refused batch
	record(h.mutate(deleteM(a, nil)), fsm.Deleted)
	record(h.batch(deleteM(b, nil), createM(b, "uid-b2", `{"b":2}`)), fsm.Deleted, fsm.Added)
	record(h.mutate(updateM(c, `{"c":2}`, nil)), fsm.Modified)
	return want
}

// withoutPrev drops the prev= suffix so lines compare with mixedLog's.
func withoutPrev(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if j := strings.Index(l, " prev="); j >= 0 {
			l = l[:j]
		}
		out[i] = l
	}
	return out
}

func TestWatchResumeFromEveryIndex(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	want := mixedLog(t, h)
	last := h.F.Index()
	var indexes []uint64
	for _, l := range want {
		var typ string
		var idx uint64
		if _, err := fmt.Sscanf(l, "%s %d", &typ, &idx); err != nil {
			t.Fatalf("event line %q: %v", l, err)
		}
		indexes = append(indexes, idx)
	}
	for from := uint64(0); from < last; from++ {
		w, err := h.F.Watch(from)
		if err != nil {
			t.Fatalf("Watch(%d): %v", from, err)
		}
		var expect []string
		for i, idx := range indexes {
			if idx > from {
				expect = append(expect, want[i])
			}
		}
		if w.Cursor() != from {
			t.Fatalf("new watcher cursor %d, want %d", w.Cursor(), from)
		}
		got := withoutPrev(eventLines(next(t, w)))
		sameLines(t, fmt.Sprintf("Watch(%d)", from), got, expect)
		if w.Cursor() != indexes[len(indexes)-1] {
			t.Fatalf("cursor %d after Next, want %d", w.Cursor(), indexes[len(indexes)-1])
		}
	}
}

func TestWatchAtCurrentIndexGetsNextEvent(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	mixedLog(t, h)
	w, err := h.F.Watch(h.F.Index())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []*fsm.Event, 1)
	errs := make(chan error, 1)
	go func() {
		evs, err := w.Next(context.Background())
		if err != nil {
			errs <- err
			return
		}
		got <- evs
	}()
	k := cmKey("ns", "late")
	wantOK(t, h.mutate(createM(k, "", `{}`)))
	select {
	case evs := <-got:
		if len(evs) != 1 || evs[0].Object.Key != k || evs[0].Index != h.index || evs[0].Type != fsm.Added {
			t.Fatalf("events %q, want the create at %d", eventLines(evs), h.index)
		}
	case err := <-errs:
		t.Fatalf("Next: %v", err)
	case <-time.After(waitLimit):
		t.Fatalf("Next did not return the new event")
	}
}

func TestWatchNextBlocksUntilEvent(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	wantOK(t, h.mutate(createM(cmKey("ns", "a"), "", `{}`)))
	w, err := h.F.Watch(1)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []*fsm.Event, 1)
	go func() {
		evs, _ := w.Next(context.Background())
		done <- evs
	}()
	// Entries that apply no change must not wake the watcher with nothing.
	h.mutate(createM(cmKey("ns", "a"), "", `{}`)) // refused
	h.skip()
	select {
	case evs := <-done:
		t.Fatalf("Next returned %q before any event", eventLines(evs))
	default:
	}
	wantOK(t, h.mutate(updateM(cmKey("ns", "a"), `{"v":2}`, nil)))
	select {
	case evs := <-done:
		if len(evs) != 1 || evs[0].Index != 4 || evs[0].Type != fsm.Modified {
			t.Fatalf("events %q, want the update at 4", eventLines(evs))
		}
	case <-time.After(waitLimit):
		t.Fatalf("Next did not return")
	}
}

func TestWatchNextHonoursContext(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	w, err := h.F.Watch(0)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := w.Next(ctx)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Next after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("Next ignored the cancelled context")
	}

	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if _, err := w.Next(expired); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with a past deadline: %v, want DeadlineExceeded", err)
	}

	// The watcher still works, and pending events win over a done context.
	wantOK(t, h.mutate(createM(cmKey("ns", "a"), "", `{}`)))
	evs, err := w.Next(expired)
	if err != nil || len(evs) != 1 || evs[0].Index != 1 {
		t.Fatalf("Next with events pending: %q, %v", eventLines(evs), err)
	}
}

func TestWatchExpired(t *testing.T) {
	h := newHarness(t, fsm.Options{RingSize: 4})
	early, err := h.F.Watch(0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		wantOK(t, h.mutate(createM(cmKey("ns", fmt.Sprintf("o%d", i)), "", `{}`)))
	}
	// Not full yet: every event since 0 is held.
	if evs := next(t, early); len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	mid, err := h.F.Watch(2)
	if err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 10; i++ {
		wantOK(t, h.mutate(createM(cmKey("ns", fmt.Sprintf("o%d", i)), "", `{}`)))
	}
	// The ring holds events 7..10; a cursor at 6 or later can resume.
	for from := uint64(0); from <= 5; from++ {
		if _, err := h.F.Watch(from); !errors.Is(err, fsm.ErrExpired) {
			t.Fatalf("Watch(%d): %v, want ErrExpired", from, err)
		}
	}
	for from := uint64(6); from <= 10; from++ {
		w, err := h.F.Watch(from)
		if err != nil {
			t.Fatalf("Watch(%d): %v", from, err)
		}
		if from < 10 {
			if evs := next(t, w); len(evs) != int(10-from) || evs[0].Index != from+1 {
				t.Fatalf("Watch(%d): %q", from, eventLines(evs))
			}
		}
	}
	ctx := context.Background()
	if _, err := early.Next(ctx); !errors.Is(err, fsm.ErrExpired) {
		t.Fatalf("Next of a watcher at 3: %v, want ErrExpired", err)
	}
	if _, err := mid.Next(ctx); !errors.Is(err, fsm.ErrExpired) {
		t.Fatalf("Next of a watcher at 2: %v, want ErrExpired", err)
	}
	// Expiry is final: the watcher stays expired.
	if _, err := mid.Next(ctx); !errors.Is(err, fsm.ErrExpired) {
		t.Fatalf("second Next of an expired watcher: %v", err)
	}

	// A watcher that falls behind while blocked expires too.
	slow, err := h.F.Watch(10)
	if err != nil {
		t.Fatal(err)
	}
	for i := 11; i <= 15; i++ {
		wantOK(t, h.mutate(createM(cmKey("ns", fmt.Sprintf("o%d", i)), "", `{}`)))
	}
	if _, err := slow.Next(ctx); !errors.Is(err, fsm.ErrExpired) {
		t.Fatalf("Next of a watcher overtaken by the ring: %v, want ErrExpired", err)
	}
}

// TestWatchBatchEviction: events of one index are resumable only together.
func TestWatchBatchEviction(t *testing.T) {
	t.Run("batch larger than the ring", func(t *testing.T) {
		h := newHarness(t, fsm.Options{RingSize: 2})
		wantOK(t, h.batch(createM(cmKey("ns", "a"), "", `{}`), createM(cmKey("ns", "b"), "", `{}`), createM(cmKey("ns", "c"), "", `{}`)))
		if _, err := h.F.Watch(0); !errors.Is(err, fsm.ErrExpired) {
			t.Fatalf("Watch(0) with part of batch 1 evicted: %v, want ErrExpired", err)
		}
		w, err := h.F.Watch(1)
		if err != nil {
			t.Fatalf("Watch(1): %v", err)
		}
		wantOK(t, h.mutate(createM(cmKey("ns", "d"), "", `{}`)))
		if evs := next(t, w); len(evs) != 1 || evs[0].Index != 2 {
			t.Fatalf("events %q, want the one at 2", eventLines(evs))
		}
	})
	t.Run("batch partly evicted", func(t *testing.T) {
		h := newHarness(t, fsm.Options{RingSize: 4})
		wantOK(t, h.batch(createM(cmKey("ns", "a"), "", `{}`), createM(cmKey("ns", "b"), "", `{}`), createM(cmKey("ns", "c"), "", `{}`)))
		wantOK(t, h.mutate(createM(cmKey("ns", "d"), "", `{}`)))
		w0, err := h.F.Watch(0)
		if err != nil {
			t.Fatalf("Watch(0) with the ring full but nothing evicted: %v", err)
		}
		wantOK(t, h.mutate(createM(cmKey("ns", "e"), "", `{}`)))
		if _, err := h.F.Watch(0); !errors.Is(err, fsm.ErrExpired) {
			t.Fatalf("Watch(0) with one event of batch 1 evicted: %v, want ErrExpired", err)
		}
		if _, err := w0.Next(context.Background()); !errors.Is(err, fsm.ErrExpired) {
			t.Fatalf("Next from 0 with one event of batch 1 evicted: %v, want ErrExpired", err)
		}
		w, err := h.F.Watch(1)
		if err != nil {
			t.Fatalf("Watch(1): %v", err)
		}
		if evs := next(t, w); len(evs) != 2 || evs[0].Index != 2 || evs[1].Index != 3 {
			t.Fatalf("events %q, want 2 and 3", eventLines(evs))
		}
	})
}

// TestWatchConcurrent: watchers reading while entries are applied each see
// every event exactly once, in order. Run with -race.
func TestWatchConcurrent(t *testing.T) {
	h := newHarness(t, fsm.Options{RingSize: 1 << 16})
	const watchers = 8
	const entries = 300
	ws := make([]*fsm.Watcher, watchers)
	for i := range ws {
		w, err := h.F.Watch(0)
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = w
	}

	// Build the entries first; the writer only applies them.
	type step struct {
		batch bool
		ms    []fsm.Mutation
	}
	var steps []step
	for i := range entries {
		k := cmKey("ns", fmt.Sprintf("o%d", i%17))
		switch i % 5 {
		case 0, 1:
			steps = append(steps, step{ms: []fsm.Mutation{createM(k, "", fmt.Sprintf(`{"i":%d}`, i))}})
		case 2:
			steps = append(steps, step{ms: []fsm.Mutation{updateM(k, fmt.Sprintf(`{"i":%d}`, i), nil)}})
		case 3:
			steps = append(steps, step{batch: true, ms: []fsm.Mutation{
				createM(cmKey("b", fmt.Sprintf("x%d", i)), "", `{}`),
				createM(cmKey("b", fmt.Sprintf("y%d", i)), "", `{}`),
			}})
		case 4:
			steps = append(steps, step{ms: []fsm.Mutation{deleteM(k, nil)}})
		}
	}
	last := uint64(len(steps))

	got := make([][]string, watchers)
	errs := make(chan error, watchers+64)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w.Cursor() < last {
				evs, err := w.Next(ctx)
				if err != nil {
					errs <- fmt.Errorf("watcher %d at %d: %w", i, w.Cursor(), err)
					return
				}
				got[i] = append(got[i], eventLines(evs)...)
			}
		}()
	}
	// A reader of the state runs at the same time; every view it gets is
	// consistent with its index.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for h.F.Index() < last {
			snap := h.F.Read()
			idx := snap.Index()
			snap.All(func(o *state.Object) bool {
				if o.ModifyIndex > idx {
					errs <- fmt.Errorf("view at %d holds %s modified at %d", idx, o.Key, o.ModifyIndex)
					return false
				}
				return true
			})
		}
	}()
	var results []*fsm.Result
	for _, s := range steps {
		if s.batch {
			results = append(results, h.batch(s.ms...))
		} else {
			results = append(results, h.mutate(s.ms[0]))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	w, err := h.F.Watch(0)
	if err != nil {
		t.Fatal(err)
	}
	want := eventLines(next(t, w))
	if len(want) == 0 {
		t.Fatalf("no events")
	}
	n := 0
	for _, r := range results {
		n += len(r.Objects)
	}
	if n != len(want) {
		t.Fatalf("%d events in the ring for %d changed objects", len(want), n)
	}
	for i := range got {
		sameLines(t, fmt.Sprintf("watcher %d", i), got[i], want)
	}
}
