package fsm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
)

// entriesV1 is a log written by the release before entry checksums
// (format 1: type byte and body), kept in testdata.
func entriesV1(t testing.TB) []*raft.Log {
	t.Helper()
	b, err := os.ReadFile("testdata/entries-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	if err := json.Unmarshal(b, &logs); err != nil {
		t.Fatal(err)
	}
	return logs
}

// TestApplyFormat1Entries: entries written before checksums still apply,
// and give the state the previous release's snapshot of them holds.
func TestApplyFormat1Entries(t *testing.T) {
	logs := entriesV1(t)
	for _, l := range logs {
		if l.Type == raft.LogCommand && fsm.MessageType(l.Data[0]) == fsm.FramedType {
			t.Fatalf("entry %d is framed: the fixture must be format 1", l.Index)
		}
	}
	f := fsm.New(fsm.Options{Logger: quietLogger()})
	applyAll(f, logs)
	if c := f.Corruption(); c != nil {
		t.Fatalf("format-1 log marked corrupt: %v", c)
	}
	want := fsm.New(fsm.Options{Logger: quietLogger()})
	old, err := os.ReadFile("testdata/snapshot-v2.snap")
	if err != nil {
		t.Fatal(err)
	}
	if err := restore(t, want, old); err != nil {
		t.Fatal(err)
	}
	sameState(t, f.Read(), want.Read())
}

// TestApplyRefusesFlippedByte: one byte changed in a stored entry is never
// applied; the FSM marks itself corrupt, applies nothing more until
// repaired, and Repair (a healthy master's snapshot, then the local entries
// after it) brings it to the same state as a healthy master.
func TestApplyRefusesFlippedByte(t *testing.T) {
	logs := genLog(t, 31, 300)
	healthy := newHarness(t, fsm.Options{})
	applyAll(healthy.F, logs)
	for _, pos := range []int{0, 1, 7, -5, -1} {
		for i := 100; i < len(logs); i++ {
			if logs[i].Type != raft.LogCommand || fsm.MessageType(logs[i].Data[0]) != fsm.FramedType {
				continue // format 1 (genLog writes some by hand) has no checksum
			}
			bad := bytes.Clone(logs[i].Data)
			p := pos
			if p < 0 {
				p += len(bad)
			}
			bad[p] ^= 0x04
			sick := newHarness(t, fsm.Options{})
			applyAll(sick.F, logs[:i])
			changed := sick.F.CorruptionChanged()
			before := sick.F.Read()
			res := sick.F.Apply(&raft.Log{Index: logs[i].Index, Type: raft.LogCommand, Data: bad}).(*fsm.Result)
			if res.Err == nil || res.Err.Reason != fsm.ReasonUnavailable {
				t.Fatalf("corrupt entry %d (byte %d): result %+v, want %s", i, p, res, fsm.ReasonUnavailable)
			}
			c := sick.F.Corruption()
			if c == nil || c.Index != logs[i].Index {
				t.Fatalf("corruption %v, want at index %d", c, logs[i].Index)
			}
			select {
			case <-changed:
			default:
				t.Fatalf("CorruptionChanged not closed")
			}
			// Nothing more applies while corrupt.
			applyAll(sick.F, logs[i+1:i+20])
			sameState(t, sick.F.Read(), before)

			// Repair from a snapshot of a master at i+5 (ahead of the
			// corrupt entry), replaying the local entries up to i+19.
			at := fsm.New(fsm.Options{Logger: quietLogger()})
			applyAll(at, logs[:i+5])
			local := map[uint64]*raft.Log{}
			for _, l := range logs {
				local[l.Index] = l
			}
			local[logs[i].Index] = &raft.Log{Index: logs[i].Index, Type: raft.LogCommand, Data: bad}
			if _, err := sick.F.Repair(bytes.NewReader(persist(t, at)), func(idx uint64) (*raft.Log, error) {
				if l, ok := local[idx]; ok {
					return l, nil
				}
				return nil, raft.ErrLogNotFound
			}); err != nil {
				t.Fatalf("repair: %v", err)
			}
			if c := sick.F.Corruption(); c != nil {
				t.Fatalf("still corrupt after repair: %v", c)
			}
			// Raft hands it the entries again (already applied: skipped),
			// then the rest.
			applyAll(sick.F, logs[i+1:])
			sameState(t, sick.F.Read(), healthy.F.Read())
			break
		}
	}
}

// TestApplyUnknownFormatIsCorrupt: an entry that starts with no known
// format byte (format 1 had types 1-3, format 2 the frame) was damaged: it
// marks the FSM corrupt instead of being applied or crashing the master.
func TestApplyUnknownFormatIsCorrupt(t *testing.T) {
	k := cmKey("ns", "a")
	for _, first := range []byte{0, 4, 5, 0x81, 0xff} {
		h := newHarness(t, fsm.Options{})
		wantOK(t, h.mutate(createM(cmKey("ns", "before"), "", `{}`)))
		entry := encodeMutation(t, createM(k, "", `{}`))
		entry[0] = first
		if res := h.apply(entry); res.Err == nil || res.Err.Reason != fsm.ReasonUnavailable {
			t.Fatalf("first byte %#x: result %+v", first, res)
		}
		if c := h.F.Corruption(); c == nil || c.Index != 2 {
			t.Fatalf("first byte %#x: corruption %v", first, c)
		}
		if h.F.Read().Get(k) != nil {
			t.Fatalf("first byte %#x: applied", first)
		}
	}
}

// TestReplaySkipsApplied: entries Replay applied from the local log are
// skipped when Raft hands them to the FSM again.
func TestReplaySkipsApplied(t *testing.T) {
	logs := genLog(t, 41, 200)
	want := fsm.New(fsm.Options{Logger: quietLogger()})
	applyAll(want, logs)
	f := fsm.New(fsm.Options{Logger: quietLogger()})
	if err := f.Replay(150, func(i uint64) (*raft.Log, error) { return logs[i-1], nil }); err != nil {
		t.Fatal(err)
	}
	if f.Index() < 140 {
		t.Fatalf("replayed to %d", f.Index())
	}
	applyAll(f, logs)
	sameState(t, f.Read(), want.Read())
	if err := f.Replay(300, func(i uint64) (*raft.Log, error) { return nil, raft.ErrLogNotFound }); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("replay past the log: %v", err)
	}
}

// TestDigestPoints: masters that applied the same log have the same digest
// at every digest point; a master whose state differs does not.
func TestDigestPoints(t *testing.T) {
	logs := genLog(t, 51, 300)
	var withDigests []*raft.Log
	for i, l := range logs {
		withDigests = append(withDigests, l)
		if i%50 == 49 {
			withDigests = append(withDigests, &raft.Log{Type: raft.LogCommand, Data: fsm.EncodeDigest()})
		}
	}
	for i, l := range withDigests {
		c := *l
		c.Index = uint64(i + 1)
		withDigests[i] = &c
	}
	a := fsm.New(fsm.Options{Logger: quietLogger()})
	b := fsm.New(fsm.Options{Logger: quietLogger()})
	applyAll(a, withDigests)
	for _, l := range withDigests { // one at a time and in one batch
		b.ApplyBatch([]*raft.Log{l})
	}
	last := a.LastDigestIndex()
	if last == 0 || last != b.LastDigestIndex() {
		t.Fatalf("digest points %d and %d", last, b.LastDigestIndex())
	}
	da, ok1 := a.Digest(last)
	db, ok2 := b.Digest(last)
	if !ok1 || !ok2 || da != db || len(da) != 64 {
		t.Fatalf("digests %q %v, %q %v", da, ok1, db, ok2)
	}
	if da != fsm.StateDigest(a.Read()) && a.Index() == last {
		t.Fatalf("digest is not of the state at its index")
	}
	// A state that differs in one object's data differs in digest.
	c := newHarness(t, fsm.Options{})
	applyAll(c.F, withDigests[:last-1])
	c.index = last - 1
	wantOK(t, c.mutate(createM(cmKey("extra", "x"), "", `{}`)))
	if fsm.StateDigest(c.F.Read()) == da {
		t.Fatalf("different states share a digest")
	}
	if _, ok := a.Digest(last - 1); ok {
		t.Fatalf("digest at an index that is no digest point")
	}
}

// TestCorruptionEndsWatches: open watches end with ErrExpired when the FSM
// finds itself corrupt, so their clients relist from a master that serves.
func TestCorruptionEndsWatches(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	wantOK(t, h.mutate(createM(cmKey("ns", "a"), "", `{}`)))
	w, err := h.F.Watch(h.F.Index())
	if err != nil {
		t.Fatal(err)
	}
	bad := encodeMutation(t, createM(cmKey("ns", "b"), "", `{}`))
	bad[len(bad)-1] ^= 1
	h.apply(bad)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := w.Next(ctx); !errors.Is(err, fsm.ErrExpired) {
		t.Fatalf("watch after corruption: %v, want ErrExpired", err)
	}
}
