package fsm_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
)

// waitLimit bounds every wait in these tests. Nothing waits for it to pass:
// it only turns a hang into a failure.
const waitLimit = 10 * time.Second

// harness feeds entries to an FSM at increasing Raft indexes, as Raft would.
type harness struct {
	t     testing.TB
	F     *fsm.FSM
	index uint64
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newHarness(t testing.TB, opts fsm.Options) *harness {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	return &harness{t: t, F: fsm.New(opts)}
}

// apply applies entry at the next index and returns its result.
func (h *harness) apply(entry []byte) *fsm.Result {
	h.t.Helper()
	h.index++
	return applyAt(h.t, h.F, h.index, entry)
}

// mutate encodes and applies one mutation.
func (h *harness) mutate(m fsm.Mutation) *fsm.Result {
	h.t.Helper()
	return h.apply(encodeMutation(h.t, m))
}

// batch encodes and applies an atomic batch.
func (h *harness) batch(ms ...fsm.Mutation) *fsm.Result {
	h.t.Helper()
	return h.apply(encodeBatch(h.t, ms...))
}

// skip applies a non-command entry (a configuration change) at the next index.
func (h *harness) skip() {
	h.t.Helper()
	h.index++
	if out := h.F.Apply(&raft.Log{Index: h.index, Term: 1, Type: raft.LogConfiguration, Data: []byte("not a command")}); out != nil {
		h.t.Fatalf("Apply(configuration entry) = %#v, want nil", out)
	}
}

func applyAt(t testing.TB, f *fsm.FSM, index uint64, entry []byte) *fsm.Result {
	t.Helper()
	out := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: entry})
	res, ok := out.(*fsm.Result)
	if !ok || res == nil {
		t.Fatalf("Apply at %d returned %T %v, want *fsm.Result", index, out, out)
	}
	if res.Index != index {
		t.Fatalf("Apply at %d: result index %d", index, res.Index)
	}
	return res
}

func encodeMutation(t testing.TB, m fsm.Mutation) []byte {
	t.Helper()
	b, err := fsm.EncodeMutation(m)
	if err != nil {
		t.Fatalf("EncodeMutation: %v", err)
	}
	return b
}

func encodeBatch(t testing.TB, ms ...fsm.Mutation) []byte {
	t.Helper()
	b, err := fsm.EncodeBatch(fsm.Batch{Mutations: ms})
	if err != nil {
		t.Fatalf("EncodeBatch: %v", err)
	}
	return b
}

func cmKey(ns, name string) state.Key {
	return state.Key{Resource: "configmaps", Namespace: ns, Name: name}
}

// cmJSON is a ConfigMap without resourceVersion, as the API server stores it.
func cmJSON(ns, name, value string) string {
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q,"namespace":%q},"data":{"k":%q}}`, name, ns, value)
}

func createM(k state.Key, uid, obj string) fsm.Mutation {
	return fsm.Mutation{Op: fsm.OpCreate, Key: k, UID: uid, Object: []byte(obj)}
}

func updateM(k state.Key, obj string, pre *fsm.Preconditions) fsm.Mutation {
	return fsm.Mutation{Op: fsm.OpUpdate, Key: k, Object: []byte(obj), Preconditions: pre}
}

func statusM(k state.Key, status string, pre *fsm.Preconditions) fsm.Mutation {
	m := fsm.Mutation{Op: fsm.OpUpdateStatus, Key: k, Preconditions: pre}
	if status != "" {
		m.Object = []byte(status)
	}
	return m
}

func deleteM(k state.Key, pre *fsm.Preconditions) fsm.Mutation {
	return fsm.Mutation{Op: fsm.OpDelete, Key: k, Preconditions: pre}
}

func wantOK(t testing.TB, res *fsm.Result) {
	t.Helper()
	if res.Err != nil {
		t.Fatalf("result at %d: unexpected error %v", res.Index, res.Err)
	}
}

func wantErr(t testing.TB, res *fsm.Result, reason fsm.Reason, k state.Key, op int) {
	t.Helper()
	if res.Err == nil {
		t.Fatalf("result at %d: no error, want %s", res.Index, reason)
	}
	if res.Err.Reason != reason || res.Err.Key != k || res.Err.Op != op {
		t.Fatalf("result at %d: error %+v, want reason %s key %s op %d", res.Index, res.Err, reason, k, op)
	}
	if res.Objects != nil {
		t.Fatalf("refused result at %d carries objects %v", res.Index, res.Objects)
	}
}

// objRecord is everything the state holds about one object.
type objRecord struct {
	ID          string
	Key         state.Key
	Namespace   string
	UID         string
	CreateIndex uint64
	ModifyIndex uint64
	Data        string
}

func record(o *state.Object) objRecord {
	return objRecord{ID: o.ID, Key: o.Key, Namespace: o.Namespace, UID: o.UID, CreateIndex: o.CreateIndex, ModifyIndex: o.ModifyIndex, Data: string(o.Data)}
}

// dump returns the applied index and every object in key order.
func dump(snap *state.Snapshot) (uint64, []objRecord) {
	var out []objRecord
	snap.All(func(o *state.Object) bool {
		out = append(out, record(o))
		return true
	})
	return snap.Index(), out
}

// sameState fails unless both views hold the same index and the same
// objects, byte for byte.
func sameState(t testing.TB, got, want *state.Snapshot) {
	t.Helper()
	gi, gobjs := dump(got)
	wi, wobjs := dump(want)
	if gi != wi {
		t.Errorf("state index %d, want %d", gi, wi)
	}
	if len(gobjs) != len(wobjs) {
		t.Fatalf("%d objects, want %d", len(gobjs), len(wobjs))
	}
	for i := range gobjs {
		if gobjs[i] != wobjs[i] {
			t.Fatalf("object %d:\n got %+v\nwant %+v", i, gobjs[i], wobjs[i])
		}
	}
	// The secondary indexes must agree with the objects.
	namespaces := map[string]bool{}
	lists := map[[2]string]bool{}
	for _, o := range gobjs {
		if o.UID != "" {
			if u := got.GetByUID(o.UID); u == nil || u.ID != o.ID {
				t.Errorf("GetByUID(%q) = %v, want %s", o.UID, u, o.Key)
			}
		}
		namespaces[o.Namespace] = true
		lists[[2]string{o.Key.Resource, o.Namespace}] = true
		lists[[2]string{o.Key.Resource, ""}] = true
	}
	ids := func(each func(func(*state.Object) bool)) []string {
		var out []string
		each(func(o *state.Object) bool { out = append(out, o.ID); return true })
		return out
	}
	for ns := range namespaces {
		g := ids(func(fn func(*state.Object) bool) { got.InNamespace(ns, fn) })
		w := ids(func(fn func(*state.Object) bool) { want.InNamespace(ns, fn) })
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("InNamespace(%q) = %q, want %q", ns, g, w)
		}
	}
	for l := range lists {
		if g, w := got.Count(l[0], l[1]), want.Count(l[0], l[1]); g != w {
			t.Errorf("Count(%q, %q) = %d, want %d", l[0], l[1], g, w)
		}
	}
}

// bufferSink is a raft.SnapshotSink that keeps the snapshot in memory.
type bufferSink struct {
	bytes.Buffer
	closed, cancelled bool
	// failAfter makes Write fail once this many bytes were written (<0: never).
	failAfter int
}

var errSinkFull = errors.New("sink full")

func newBufferSink() *bufferSink { return &bufferSink{failAfter: -1} }

func (s *bufferSink) Write(p []byte) (int, error) {
	if s.closed || s.cancelled {
		return 0, errors.New("write to finished sink")
	}
	if s.failAfter >= 0 && s.Len()+len(p) > s.failAfter {
		return 0, errSinkFull
	}
	return s.Buffer.Write(p)
}

func (s *bufferSink) ID() string { return "test-snapshot" }

func (s *bufferSink) Close() error {
	if s.closed || s.cancelled {
		return errors.New("sink finished twice")
	}
	s.closed = true
	return nil
}

func (s *bufferSink) Cancel() error {
	if s.closed || s.cancelled {
		return errors.New("sink finished twice")
	}
	s.cancelled = true
	return nil
}

var _ raft.SnapshotSink = (*bufferSink)(nil)

// persist snapshots f and returns the stream.
func persist(t testing.TB, f *fsm.FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	return persistSnapshot(t, snap)
}

func persistSnapshot(t testing.TB, snap raft.FSMSnapshot) []byte {
	t.Helper()
	sink := newBufferSink()
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("Persist left sink closed=%v cancelled=%v, want closed", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

// trackedReader records whether Restore closed it.
type trackedReader struct {
	io.Reader
	closed bool
}

func (r *trackedReader) Close() error { r.closed = true; return nil }

func restore(t testing.TB, f *fsm.FSM, stream []byte) error {
	t.Helper()
	return restoreFrom(t, f, bytes.NewReader(stream))
}

func restoreFrom(t testing.TB, f *fsm.FSM, r io.Reader) error {
	t.Helper()
	rc := &trackedReader{Reader: r}
	err := f.Restore(rc)
	if !rc.closed {
		t.Errorf("Restore did not close its reader")
	}
	return err
}

// next returns the next events of w, failing the test if none come.
func next(t testing.TB, w *fsm.Watcher) []*fsm.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	evs, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return evs
}

// eventLine is a comparable summary of an event.
func eventLine(ev *fsm.Event) string {
	s := fmt.Sprintf("%s %d %s uid=%s c=%d m=%d %s", ev.Type, ev.Index, ev.Object.Key, ev.Object.UID, ev.Object.CreateIndex, ev.Object.ModifyIndex, ev.Object.Data)
	if ev.Prev != nil {
		s += fmt.Sprintf(" prev=%d", ev.Prev.ModifyIndex)
	}
	return s
}

func eventLines(evs []*fsm.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = eventLine(ev)
	}
	return out
}

func sameLines(t testing.TB, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d\n got %q\nwant %q", what, len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: event %d\n got %s\nwant %s", what, i, got[i], want[i])
		}
	}
}

// mustPanic runs fn and returns the panic value, failing if fn returns.
func mustPanic(t testing.TB, fn func()) (v any) {
	t.Helper()
	defer func() { v = recover() }()
	fn()
	t.Fatalf("did not panic")
	return nil
}

// closed reports whether ch is closed right now.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// formatV1 returns a framed entry in the format written before checksums
// (type byte and body), as older masters left it in their logs.
func formatV1(t testing.TB, entry []byte) []byte {
	t.Helper()
	if len(entry) < 6 || fsm.MessageType(entry[0]) != fsm.FramedType {
		t.Fatalf("entry % x is not framed", entry)
	}
	return append([]byte{entry[1]}, entry[2:len(entry)-4]...)
}

// framed seals a type byte and body in a checksummed frame, whatever they
// hold.
func framed(typ byte, body string) []byte {
	b := append([]byte{byte(fsm.FramedType), typ}, body...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}
