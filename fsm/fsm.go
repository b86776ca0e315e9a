package fsm

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm/state"
)

// Options configure an FSM.
type Options struct {
	// RingSize is the number of watch events kept (DefaultRingSize if 0).
	RingSize int
	Logger   *slog.Logger
}

// FSM is Skiff's raft.FSM.
type FSM struct {
	log   *slog.Logger
	state atomic.Pointer[state.Store]
	ring  *ring
	// restoreMu keeps Restore's swap apart from Apply (raft never runs them
	// concurrently, but Repair, Replay and tests do).
	restoreMu sync.Mutex
	// integ: corruption found and digest points (integrity.go).
	integ integrity
	// enc seals objects of the encrypted resources (encryption.go); nil
	// when encryption at rest is off.
	enc *encryption
	// The latest snapshot persisted, and the data key that sealed it.
	snapMu        sync.Mutex
	lastSnapIndex uint64
	lastSnapKey   string
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New returns an FSM over an empty state.
func New(opts Options) *FSM {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &FSM{log: opts.Logger.With("component", "fsm"), ring: newRing(opts.RingSize, 0)}
	f.integ.changed = make(chan struct{})
	f.state.Store(state.NewStore())
	return f
}

// SetEncryption turns encryption at rest on (encryption.go). Call it
// before the FSM applies anything.
func (f *FSM) SetEncryption(c *Encryption) error {
	e, err := newEncryption(c)
	if err != nil {
		return err
	}
	f.enc = e
	return nil
}

// Read returns a consistent view of the current state.
func (f *FSM) Read() *state.Snapshot { return f.state.Load().Snapshot() }

// Index is the Raft index of the last applied command.
func (f *FSM) Index() uint64 { return f.Read().Index() }

// Watch returns a watcher of the events after index. ErrExpired means index
// is older than the ring holds.
func (f *FSM) Watch(index uint64) (*Watcher, error) {
	f.ring.mu.Lock()
	defer f.ring.mu.Unlock()
	if index < f.ring.oldest {
		return nil, ErrExpired
	}
	return &Watcher{r: f.ring, cursor: index, epoch: f.ring.epoch}, nil
}

// WatchFiltered returns a watcher of the events after index that match
// filter; it is woken only by those. The caller must Stop it.
func (f *FSM) WatchFiltered(index uint64, filter WatchFilter) (*Watcher, error) {
	f.ring.mu.Lock()
	defer f.ring.mu.Unlock()
	if index < f.ring.oldest {
		return nil, ErrExpired
	}
	w := &Watcher{r: f.ring, cursor: index, epoch: f.ring.epoch, filtered: true, filter: filter,
		wakeCh: make(chan struct{}, 1)}
	f.ring.register(w)
	return w, nil
}

// Changed returns a channel closed when the next command is applied
// (whether or not it changed an object: a refused one still advances the
// index) or the state is restored.
func (f *FSM) Changed() <-chan struct{} {
	f.ring.mu.Lock()
	defer f.ring.mu.Unlock()
	return f.ring.notify
}

// Apply applies one log entry.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies a run of log entries. Single mutations share one
// memdb transaction (a refused mutation writes nothing, so it cannot affect
// its neighbours, and one commit per run is much cheaper than one per
// entry); an atomic batch entry gets a transaction of its own so that a
// refused batch can be rolled back whole.
//
// An entry at or below the applied index is skipped: Replay (at start) or
// Repair already applied it. An entry whose checksum fails is not applied:
// the FSM marks itself corrupt and skips every entry until Repair or a
// Restore replaces its state (integrity.go).
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.restoreMu.Lock()
	defer f.restoreMu.Unlock()
	return f.applyLocked(logs)
}

func (f *FSM) applyLocked(logs []*raft.Log) []any {
	st := f.state.Load()
	base := st.Snapshot().Index()
	out := make([]any, len(logs))
	var (
		events  []*Event
		applied bool
		txn     *state.WriteTxn
		pending []*Event // events of txn, published once it commits
	)
	// Publish on the way out, even if an entry panics, so that the ring
	// holds every change that was committed.
	defer func() {
		if txn != nil {
			txn.Abort() // only reached when an entry panicked
		}
		if applied {
			f.ring.publish(events)
		}
	}()
	flush := func() {
		if txn != nil {
			txn.Commit()
			txn = nil
			events = append(events, pending...)
			pending = nil
			applied = true
		}
	}
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		if l.Index <= base {
			out[i] = &Result{Index: l.Index}
			continue
		}
		if f.integ.corrupt.Load() != nil {
			f.integ.skippedTo = l.Index
			out[i] = corruptResult(l.Index)
			continue
		}
		t, body, err := decodeEntry(l.Data)
		if errors.Is(err, ErrCorrupt) {
			flush()
			f.markCorruptLocked(l.Index, fmt.Sprintf("log entry %d: %v", l.Index, err))
			f.integ.skippedTo = l.Index
			out[i] = corruptResult(l.Index)
			continue
		}
		if err != nil {
			panic(fmt.Sprintf("fsm: undecodable entry at index %d: %v", l.Index, err))
		}
		if t == MutateType || t == MutationType {
			if txn == nil {
				txn = st.Write()
			}
			res, evs := dispatch[t](f, txn, l.Index, body)
			txn.SetIndex(l.Index)
			pending = append(pending, evs...)
			out[i] = res
			continue
		}
		flush()
		res, evs := f.applyLog(st, l.Index, t, body)
		events = append(events, evs...)
		applied = true
		out[i] = res
		if t == DigestType {
			f.integ.capture(l.Index, st.Snapshot())
		}
	}
	flush()
	return out
}

func (f *FSM) applyLog(st *state.Store, index uint64, t MessageType, body []byte) (*Result, []*Event) {
	fn, ok := dispatch[t]
	if !ok {
		panic(fmt.Sprintf("fsm: unknown message type %d at index %d: this release does not know it, so a newer release wrote it; "+
			"a downgrade across it is not supported, run that release again", t, index))
	}
	txn := st.Write()
	// Release memdb's writer lock if fn panics; a no-op after Commit.
	defer func() { txn.Abort() }()
	res, evs := fn(f, txn, index, body)
	if res.Err != nil {
		txn.Abort()
		txn = st.Write()
		evs = nil
	}
	txn.SetIndex(index)
	txn.Commit()
	return res, evs
}
