package fsm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
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
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.restoreMu.Lock()
	defer f.restoreMu.Unlock()
	st := f.state.Load()
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
		if len(l.Data) > 0 && (MessageType(l.Data[0]) == MutateType || MessageType(l.Data[0]) == MutationType) {
			if txn == nil {
				txn = st.Write()
			}
			res, evs := dispatch[MessageType(l.Data[0])](f, txn, l.Index, l.Data[1:])
			txn.SetIndex(l.Index)
			pending = append(pending, evs...)
			out[i] = res
			continue
		}
		flush()
		res, evs := f.applyLog(st, l)
		events = append(events, evs...)
		applied = true
		out[i] = res
	}
	flush()
	return out
}

func (f *FSM) applyLog(st *state.Store, l *raft.Log) (*Result, []*Event) {
	if len(l.Data) == 0 {
		panic(fmt.Sprintf("fsm: empty log entry at index %d", l.Index))
	}
	fn, ok := dispatch[MessageType(l.Data[0])]
	if !ok {
		panic(fmt.Sprintf("fsm: unknown message type %d at index %d", l.Data[0], l.Index))
	}
	txn := st.Write()
	// Release memdb's writer lock if fn panics; a no-op after Commit.
	defer func() { txn.Abort() }()
	res, evs := fn(f, txn, l.Index, l.Data[1:])
	if res.Err != nil {
		txn.Abort()
		txn = st.Write()
		evs = nil
	}
	txn.SetIndex(l.Index)
	txn.Commit()
	return res, evs
}

// A snapshot stream (version 2) is a header line, then for each object in
// key order a record line followed by exactly Len bytes of object data and
// a newline:
//
//	{"version":2,"index":I,"objects":N}
//	{"key":{...},"uid":"...","c":C,"m":M,"len":L}
//	<L bytes>
//
// The data is written as stored, byte for byte (re-encoding it as JSON would
// compact and escape it), so a restored state is identical to the one
// snapshotted. The object count lets Restore detect a stream cut short.
const snapshotVersion = 2

// snapshotHeader opens a snapshot stream.
type snapshotHeader struct {
	Version int    `json:"version"`
	Index   uint64 `json:"index"`
	Objects uint64 `json:"objects"`
}

// snapshotObject is the record line before one object's data.
type snapshotObject struct {
	Key         state.Key `json:"key"`
	UID         string    `json:"uid,omitempty"`
	CreateIndex uint64    `json:"c"`
	ModifyIndex uint64    `json:"m"`
	Len         int64     `json:"len"`
}

type fsmSnapshot struct {
	snap *state.Snapshot
}

// Snapshot captures the state; Persist streams it while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.Read()}, nil
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.snap); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

func writeSnapshot(sink io.Writer, snap *state.Snapshot) error {
	var n uint64
	snap.All(func(*state.Object) bool { n++; return true })
	w := bufio.NewWriterSize(sink, 1<<20)
	enc := json.NewEncoder(w)
	if err := enc.Encode(snapshotHeader{Version: snapshotVersion, Index: snap.Index(), Objects: n}); err != nil {
		return err
	}
	var err error
	snap.All(func(o *state.Object) bool {
		err = enc.Encode(snapshotObject{Key: o.Key, UID: o.UID, CreateIndex: o.CreateIndex, ModifyIndex: o.ModifyIndex, Len: int64(len(o.Data))})
		if err == nil {
			_, err = w.Write(o.Data)
		}
		if err == nil {
			err = w.WriteByte('\n')
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	return w.Flush()
}

// Restore replaces the state with a snapshot: it builds and checks a new
// store, swaps it in under the lock, then ends every open watch (they get
// ErrExpired and relist). On error the current state and watches are kept.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, hdr, err := readSnapshot(bufio.NewReaderSize(rc, 1<<20))
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.restoreMu.Lock()
	f.state.Store(st)
	f.ring.reset(hdr.Index)
	f.restoreMu.Unlock()
	f.log.Info("restored snapshot", "index", hdr.Index, "objects", hdr.Objects)
	return nil
}

func readSnapshot(r *bufio.Reader) (*state.Store, snapshotHeader, error) {
	var hdr snapshotHeader
	if err := readRecord(r, &hdr); err != nil {
		return nil, hdr, fmt.Errorf("header: %w", err)
	}
	if hdr.Version != snapshotVersion {
		return nil, hdr, fmt.Errorf("unsupported snapshot version %d", hdr.Version)
	}
	st := state.NewStore()
	txn := st.Write()
	defer txn.Abort()
	prev := ""
	for i := uint64(0); i < hdr.Objects; i++ {
		var so snapshotObject
		if err := readRecord(r, &so); err != nil {
			return nil, hdr, fmt.Errorf("object %d: %w", i, err)
		}
		data, err := readData(r, so.Len)
		if err != nil {
			return nil, hdr, fmt.Errorf("object %d (%s): %w", i, so.Key, err)
		}
		o := state.NewObject(so.Key, so.UID, data, so.CreateIndex, so.ModifyIndex)
		if err := checkRestored(txn, o, prev, hdr.Index); err != nil {
			return nil, hdr, fmt.Errorf("object %d (%s): %w", i, so.Key, err)
		}
		txn.Put(o)
		prev = o.ID
	}
	if _, err := r.ReadByte(); err != io.EOF {
		if err == nil {
			return nil, hdr, fmt.Errorf("data after %d objects", hdr.Objects)
		}
		return nil, hdr, err
	}
	txn.SetIndex(hdr.Index)
	txn.Commit()
	return st, hdr, nil
}

// readRecord decodes one JSON line.
func readRecord(r *bufio.Reader, v any) error {
	line, err := r.ReadSlice('\n')
	switch {
	case err == io.EOF:
		return io.ErrUnexpectedEOF
	case err == bufio.ErrBufferFull:
		return fmt.Errorf("record longer than %d bytes", r.Size())
	case err != nil:
		return err
	}
	return json.Unmarshal(line, v)
}

// readData reads n bytes of object data and the newline after them. It
// grows the buffer as data arrives, so a corrupt length fails at the end of
// the stream instead of allocating it.
func readData(r *bufio.Reader, n int64) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("negative length %d", n)
	}
	const chunk = 1 << 20
	data := make([]byte, 0, min(n, chunk))
	for int64(len(data)) < n {
		k := int(min(n-int64(len(data)), chunk))
		data = slices.Grow(data, k)
		got, err := io.ReadFull(r, data[len(data):len(data)+k])
		data = data[:len(data)+got]
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
	}
	switch b, err := r.ReadByte(); {
	case err == io.EOF:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	case b != '\n':
		return nil, fmt.Errorf("object data does not end after its length %d", n)
	}
	return data, nil
}

// checkRestored refuses an object the log could not have produced.
func checkRestored(txn *state.WriteTxn, o *state.Object, prev string, index uint64) error {
	if msg := checkKey(o.Key); msg != "" {
		return errors.New(msg)
	}
	switch {
	case o.ID <= prev:
		return errors.New("objects out of key order or repeated")
	case strings.IndexByte(o.UID, 0) >= 0:
		return errors.New("uid holds a NUL byte")
	case o.UID != "" && txn.GetByUID(o.UID) != nil:
		return fmt.Errorf("uid %s held by two objects", o.UID)
	case o.CreateIndex == 0 || o.CreateIndex > o.ModifyIndex || o.ModifyIndex > index:
		return fmt.Errorf("indexes created %d, modified %d, snapshot %d", o.CreateIndex, o.ModifyIndex, index)
	case !json.Valid(o.Data) || !isObject(o.Data):
		return errors.New("data is not a JSON object")
	}
	return nil
}
