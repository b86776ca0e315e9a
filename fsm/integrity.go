package fsm

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm/state"
)

// Integrity: an FSM that finds a log entry whose checksum fails, or is told
// its state digest differs from the leader's at the same index, marks
// itself corrupt. From then on it applies nothing (each entry Raft hands it
// is only counted) until Repair installs a snapshot from a healthy master
// or Raft restores one. The server stops serving while Corruption is set.
//
// Digest points: a DigestType entry makes every master keep the state as
// of that entry's index; Digest hashes it (off the apply path) so the
// masters can compare the same state.

// ReasonUnavailable is the Apply result of an entry a corrupt FSM did not
// apply: its outcome is decided by the healthy masters.
const ReasonUnavailable Reason = "Unavailable"

// Corruption says where and why an FSM stopped applying.
type Corruption struct {
	Index  uint64
	Reason string
}

func (c *Corruption) Error() string {
	return fmt.Sprintf("state corrupt at index %d: %s", c.Index, c.Reason)
}

// digestPoints is how many digest points an FSM keeps.
const digestPoints = 8

type digestPoint struct {
	index uint64
	snap  *state.Snapshot
	once  sync.Once
	sum   string
}

type integrity struct {
	corrupt atomic.Pointer[Corruption]
	// skippedTo is the last entry not applied while corrupt (restoreMu).
	skippedTo uint64

	mu      sync.Mutex
	changed chan struct{} // closed when corrupt changes
	points  []*digestPoint
}

func corruptResult(index uint64) *Result {
	return &Result{Index: index, Err: &Error{Reason: ReasonUnavailable,
		Message: "this master's state is corrupt and being repaired; the entry was not applied here"}}
}

// Corruption returns why the FSM stopped applying, or nil if it is healthy.
func (f *FSM) Corruption() *Corruption { return f.integ.corrupt.Load() }

// CorruptionChanged returns a channel closed when Corruption next changes.
func (f *FSM) CorruptionChanged() <-chan struct{} {
	f.integ.mu.Lock()
	defer f.integ.mu.Unlock()
	return f.integ.changed
}

// MarkCorrupt stops applying: the state at index was found wrong.
func (f *FSM) MarkCorrupt(index uint64, reason string) {
	f.restoreMu.Lock()
	defer f.restoreMu.Unlock()
	f.markCorruptLocked(index, reason)
}

func (f *FSM) markCorruptLocked(index uint64, reason string) {
	if f.integ.corrupt.Load() != nil {
		return
	}
	c := &Corruption{Index: index, Reason: reason}
	f.log.Error("state corrupt: this master stops applying and serving until repaired", "index", index, "reason", reason)
	f.setCorruption(c)
	// End every open watch (410): its client relists, from a master
	// that serves.
	f.ring.reset(f.state.Load().Snapshot().Index())
}

func (f *FSM) setCorruption(c *Corruption) {
	f.integ.mu.Lock()
	defer f.integ.mu.Unlock()
	f.integ.corrupt.Store(c)
	close(f.integ.changed)
	f.integ.changed = make(chan struct{})
}

// resetIntegrity forgets corruption and digest points after the state was
// replaced (restoreMu held).
func (f *FSM) resetIntegrity() {
	f.integ.skippedTo = 0
	if f.integ.corrupt.Load() != nil {
		f.log.Info("state repaired: applying again")
		f.setCorruption(nil)
	}
	f.integ.mu.Lock()
	f.integ.points = nil
	f.integ.mu.Unlock()
}

func (in *integrity) capture(index uint64, snap *state.Snapshot) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.points = append(in.points, &digestPoint{index: index, snap: snap})
	if len(in.points) > digestPoints {
		in.points = append(in.points[:0], in.points[len(in.points)-digestPoints:]...)
	}
}

// LastDigestIndex is the index of the newest digest point (0: none).
func (f *FSM) LastDigestIndex() uint64 {
	f.integ.mu.Lock()
	defer f.integ.mu.Unlock()
	if n := len(f.integ.points); n > 0 {
		return f.integ.points[n-1].index
	}
	return 0
}

// Digest returns the digest of the state at a digest point's index, and
// false when this FSM holds no such point (not applied yet, too old, or
// replaced by a snapshot).
func (f *FSM) Digest(index uint64) (string, bool) {
	f.integ.mu.Lock()
	var p *digestPoint
	for _, q := range f.integ.points {
		if q.index == index {
			p = q
		}
	}
	f.integ.mu.Unlock()
	if p == nil {
		return "", false
	}
	p.once.Do(func() {
		p.sum = StateDigest(p.snap)
		p.snap = nil
	})
	return p.sum, true
}

// StateDigest hashes a state: its index and every object (key, UID,
// indexes, data) in key order, each field length-prefixed. Two masters
// that applied the same log to the same index get the same digest.
func StateDigest(snap *state.Snapshot) string {
	h := sha256.New()
	var buf []byte
	buf = binary.AppendUvarint(buf, snap.Index())
	snap.All(func(o *state.Object) bool {
		for _, s := range []string{o.Key.Resource, o.Key.Namespace, o.Key.Name, o.UID} {
			buf = binary.AppendUvarint(buf, uint64(len(s)))
			buf = append(buf, s...)
		}
		buf = binary.AppendUvarint(buf, o.CreateIndex)
		buf = binary.AppendUvarint(buf, o.ModifyIndex)
		buf = binary.AppendUvarint(buf, uint64(len(o.Data)))
		_, _ = h.Write(buf) // a hash never fails
		_, _ = h.Write(o.Data)
		buf = buf[:0]
		return true
	})
	_, _ = h.Write(buf)
	return hex.EncodeToString(h.Sum(nil))
}

func applyDigest(f *FSM, txn *state.WriteTxn, index uint64, body []byte) (*Result, []*Event) {
	return &Result{Index: index}, nil
}

// LogSource returns the local Raft log entry at an index.
type LogSource func(index uint64) (*raft.Log, error)

// Repair replaces the state with a snapshot from a healthy master (taken
// after this master's last applied entry was committed), then applies the
// entries Raft handed this FSM after the snapshot's index while it was
// corrupt, read again from logs. It returns the index the state is at.
func (f *FSM) Repair(rc io.Reader, logs LogSource) (uint64, error) {
	st, hdr, err := readSnapshot(bufio.NewReaderSize(rc, 1<<20), f.enc)
	if err != nil {
		return 0, fmt.Errorf("repair: %w", err)
	}
	f.restoreMu.Lock()
	defer f.restoreMu.Unlock()
	upTo := max(f.integ.skippedTo, f.state.Load().Snapshot().Index())
	f.state.Store(st)
	f.ring.reset(hdr.Index)
	f.resetIntegrity()
	f.log.Info("installed a snapshot from the leader", "index", hdr.Index, "objects", hdr.Objects, "replay-to", upTo)
	if err := f.replayLocked(hdr.Index+1, upTo, logs); err != nil {
		return 0, fmt.Errorf("repair: %w", err)
	}
	return f.state.Load().Snapshot().Index(), nil
}

// Replay applies the local log's entries from the applied index up to
// index: at start, the entries this master applied (so they are
// committed) before it stopped, which Raft re-applies only once it hears
// the commit index from a leader. A master restarted without quorum so
// serves no state older than it served before.
func (f *FSM) Replay(upTo uint64, logs LogSource) error {
	f.restoreMu.Lock()
	defer f.restoreMu.Unlock()
	return f.replayLocked(f.state.Load().Snapshot().Index()+1, upTo, logs)
}

func (f *FSM) replayLocked(from, upTo uint64, logs LogSource) error {
	const chunk = 256
	batch := make([]*raft.Log, 0, chunk)
	for i := from; i <= upTo; i++ {
		l, err := logs(i)
		if err != nil {
			return fmt.Errorf("log entry %d: %w", i, err)
		}
		batch = append(batch, l)
		if len(batch) == chunk || i == upTo {
			f.applyLocked(batch)
			batch = batch[:0]
		}
	}
	return nil
}
