package fsm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
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
	// concurrently, but tests and future callers may).
	restoreMu sync.Mutex
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
	f.state.Store(state.NewStore())
	return f
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

// Changed returns a channel closed at the next applied change (or restore).
func (f *FSM) Changed() <-chan struct{} {
	f.ring.mu.Lock()
	defer f.ring.mu.Unlock()
	return f.ring.notify
}

// Apply applies one log entry.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies a run of log entries; each gets its own transaction so
// a refused mutation never affects its neighbours.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.restoreMu.Lock()
	defer f.restoreMu.Unlock()
	st := f.state.Load()
	out := make([]any, len(logs))
	var events []*Event
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		if len(l.Data) == 0 {
			panic(fmt.Sprintf("fsm: empty log entry at index %d", l.Index))
		}
		fn, ok := dispatch[MessageType(l.Data[0])]
		if !ok {
			panic(fmt.Sprintf("fsm: unknown message type %d at index %d", l.Data[0], l.Index))
		}
		txn := st.Write()
		res, evs := fn(f, txn, l.Index, l.Data[1:])
		if res.Err != nil {
			txn.Abort()
			txn = st.Write()
		}
		txn.SetIndex(l.Index)
		txn.Commit()
		events = append(events, evs...)
		out[i] = res
	}
	f.ring.append(events)
	return out
}

// snapshotHeader opens a snapshot stream.
type snapshotHeader struct {
	Version int    `json:"version"`
	Index   uint64 `json:"index"`
}

// snapshotObject is one object in a snapshot stream.
type snapshotObject struct {
	Key         state.Key       `json:"key"`
	UID         string          `json:"uid,omitempty"`
	CreateIndex uint64          `json:"c"`
	ModifyIndex uint64          `json:"m"`
	Data        json.RawMessage `json:"d"`
}

type fsmSnapshot struct {
	snap *state.Snapshot
}

// Snapshot captures the state; Persist streams it while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.Read()}, nil
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<20)
	enc := json.NewEncoder(w)
	err := enc.Encode(snapshotHeader{Version: 1, Index: s.snap.Index()})
	if err == nil {
		s.snap.All(func(o *state.Object) bool {
			err = enc.Encode(snapshotObject{Key: o.Key, UID: o.UID, CreateIndex: o.CreateIndex, ModifyIndex: o.ModifyIndex, Data: o.Data})
			return err == nil
		})
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// Restore replaces the state with a snapshot: it builds a new store, swaps
// it in under the lock, then ends every open watch (they get ErrExpired and
// relist).
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(rc, 1<<20))
	var hdr snapshotHeader
	if err := dec.Decode(&hdr); err != nil {
		return fmt.Errorf("restore: header: %w", err)
	}
	if hdr.Version != 1 {
		return fmt.Errorf("restore: unsupported snapshot version %d", hdr.Version)
	}
	st := state.NewStore()
	txn := st.Write()
	n := 0
	for {
		var so snapshotObject
		err := dec.Decode(&so)
		if err == io.EOF {
			break
		}
		if err != nil {
			txn.Abort()
			return fmt.Errorf("restore: object %d: %w", n, err)
		}
		txn.Put(state.NewObject(so.Key, so.UID, []byte(so.Data), so.CreateIndex, so.ModifyIndex))
		n++
	}
	txn.SetIndex(hdr.Index)
	txn.Commit()

	f.restoreMu.Lock()
	f.state.Store(st)
	f.ring.reset(hdr.Index)
	f.restoreMu.Unlock()
	f.log.Info("restored snapshot", "index", hdr.Index, "objects", n)
	return nil
}
