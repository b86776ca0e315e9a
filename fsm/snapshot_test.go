package fsm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-io/skiff/fsm"
)

func TestSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	mixedLog(t, h)
	logs := genLog(t, 11, 1500)
	for _, l := range logs {
		l.Index += h.index
		h.F.Apply(l)
	}
	h.index = logs[len(logs)-1].Index
	// One object bigger than Persist's buffer.
	big := `{"blob":"` + strings.Repeat("x<y>&", 300_000) + `"}`
	wantOK(t, h.apply([]byte(fmt.Sprintf("%c{\"op\":1,\"key\":{\"r\":\"configmaps\",\"ns\":\"big\",\"n\":\"b\"},\"obj\":%s}", fsm.MutateType, big))))

	view := h.F.Read()
	snap, err := h.F.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()

	// Persist while Apply goes on: the stream holds the state at Snapshot.
	later := genLog(t, 12, 300)
	for _, l := range later {
		l.Index += h.index
	}
	var (
		stream []byte
		wg     sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		sink := newBufferSink()
		if err := snap.Persist(sink); err == nil && sink.closed {
			stream = sink.Bytes()
		}
	}()
	applyAll(h.F, later)
	wg.Wait()
	if stream == nil {
		t.Fatalf("Persist failed")
	}

	fresh := newHarness(t, fsm.Options{})
	if err := restore(t, fresh.F, stream); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	sameState(t, fresh.F.Read(), view)
	if fresh.F.Index() != view.Index() {
		t.Fatalf("restored index %d, want %d", fresh.F.Index(), view.Index())
	}
	if o := fresh.F.Read().Get(cmKey("big", "b")); o == nil || string(o.Data) != big {
		t.Fatalf("big object not restored byte for byte")
	}
	// A snapshot of the restored state is the same stream.
	if again := persist(t, fresh.F); !bytes.Equal(again, stream) {
		t.Fatalf("snapshot of the restored state differs from the one restored (%d vs %d bytes)", len(again), len(stream))
	}
	// The restored replica goes on exactly like the original.
	applyAll(fresh.F, later)
	sameState(t, fresh.F.Read(), h.F.Read())
}

func TestSnapshotEmpty(t *testing.T) {
	stream := persist(t, fsm.New(fsm.Options{Logger: quietLogger()}))
	f := fsm.New(fsm.Options{Logger: quietLogger()})
	if err := restore(t, f, stream); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if idx, objs := dump(f.Read()); idx != 0 || len(objs) != 0 {
		t.Fatalf("restored empty snapshot: index %d, %d objects", idx, len(objs))
	}
	wantOK(t, applyAt(t, f, 1, encodeMutation(t, createM(cmKey("ns", "a"), "", `{}`))))
}

func TestRestoreReplacesState(t *testing.T) {
	src := newHarness(t, fsm.Options{})
	wantOK(t, src.mutate(createM(cmKey("ns", "kept"), "uid-k", `{"v":"snapshot"}`)))
	stream := persist(t, src.F)

	dst := newHarness(t, fsm.Options{})
	wantOK(t, dst.mutate(createM(cmKey("ns", "gone"), "uid-g", `{}`)))
	wantOK(t, dst.mutate(createM(cmKey("ns", "kept"), "uid-other", `{"v":"old"}`)))
	if err := restore(t, dst.F, stream); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	sameState(t, dst.F.Read(), src.F.Read())
	snap := dst.F.Read()
	if snap.Get(cmKey("ns", "gone")) != nil || snap.GetByUID("uid-g") != nil || snap.GetByUID("uid-other") != nil {
		t.Fatalf("objects of the replaced state survived the restore")
	}
	// Raft applies the entries after the snapshot next.
	wantOK(t, applyAt(t, dst.F, 2, encodeMutation(t, updateM(cmKey("ns", "kept"), `{"v":2}`, &fsm.Preconditions{UID: "uid-k", ResourceVersion: 1}))))
}

// failingReader returns data and then an I/O error.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// withoutTrailer cuts the checksum line off a version-3 stream (nothing sealed).
func withoutTrailer(t testing.TB, stream []byte) []byte {
	t.Helper()
	i := bytes.LastIndex(stream[:len(stream)-1], []byte("\n"))
	if i < 0 || !bytes.HasPrefix(stream[i+1:], []byte(`{"crc32c":`)) {
		t.Fatalf("no trailer in the stream")
	}
	return stream[:i+1]
}

// asVersion2 turns a version-3 stream into the version-2 stream of the
// same state, as masters wrote before snapshots had checksums.
func asVersion2(t testing.TB, stream []byte) []byte {
	t.Helper()
	out := bytes.Replace(withoutTrailer(t, stream), []byte(`{"version":3,`), []byte(`{"version":2,`), 1)
	if bytes.Equal(out, withoutTrailer(t, stream)) {
		t.Fatalf("not a version-3 stream")
	}
	return out
}

// TestRestoreRefusesFlippedBytes: one bit changed anywhere in a snapshot
// is refused by its checksum (or before), and the state is kept.
func TestRestoreRefusesFlippedBytes(t *testing.T) {
	src := newHarness(t, fsm.Options{})
	mixedLog(t, src)
	stream := persist(t, src.F)
	dst := newHarness(t, fsm.Options{})
	wantOK(t, dst.mutate(createM(cmKey("dst", "a"), "", `{}`)))
	before := dst.F.Read()
	checksumErrs := 0
	for i := range stream {
		for _, bit := range []byte{0x01, 0x20} {
			bad := bytes.Clone(stream)
			bad[i] ^= bit
			err := restore(t, dst.F, bad)
			if err == nil {
				t.Fatalf("byte %d ^ %#x: restored", i, bit)
			}
			if errors.Is(err, fsm.ErrCorrupt) {
				checksumErrs++
			}
			sameState(t, dst.F.Read(), before)
		}
	}
	if checksumErrs == 0 {
		t.Fatalf("no flip was refused by the checksum")
	}
}

// TestRestoreVersion2: a snapshot written before checksums (testdata, made
// by the previous release from the log in entries-v1.json) restores to the
// state that log gives.
func TestRestoreVersion2(t *testing.T) {
	old, err := os.ReadFile("testdata/snapshot-v2.snap")
	if err != nil {
		t.Fatal(err)
	}
	f := fsm.New(fsm.Options{Logger: quietLogger()})
	if err := restore(t, f, old); err != nil {
		t.Fatalf("version-2 snapshot: %v", err)
	}
	want := fsm.New(fsm.Options{Logger: quietLogger()})
	applyAll(want, entriesV1(t))
	sameState(t, f.Read(), want.Read())
}

// TestRestoreCorruptKeepsState: a stream that is cut short, extended or
// garbled is refused, and the FSM keeps its state and its watchers.
func TestRestoreCorruptKeepsState(t *testing.T) {
	src := newHarness(t, fsm.Options{})
	mixedLog(t, src)
	stream := persist(t, src.F)
	if err := restore(t, fsm.New(fsm.Options{Logger: quietLogger()}), stream); err != nil {
		t.Fatalf("the good stream does not restore: %v", err)
	}

	dst := newHarness(t, fsm.Options{})
	for i := range 5 {
		wantOK(t, dst.mutate(createM(cmKey("dst", fmt.Sprint(i)), fmt.Sprint("uid-dst-", i), `{}`)))
	}
	before := dst.F.Read()
	w, err := dst.F.Watch(dst.F.Index())
	if err != nil {
		t.Fatal(err)
	}
	changed := dst.F.Changed()

	check := func(name string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: Restore accepted a corrupt stream", name)
		}
		sameState(t, dst.F.Read(), before)
	}
	for cut := range len(stream) {
		check(fmt.Sprintf("cut at %d of %d", cut, len(stream)), restore(t, dst.F, stream[:cut]))
	}
	check("trailing byte", restore(t, dst.F, append(bytes.Clone(stream), '\n')))
	check("trailing garbage", restore(t, dst.F, append(bytes.Clone(stream), "{}"...)))
	check("twice", restore(t, dst.F, append(bytes.Clone(stream), stream...)))
	check("not JSON", restore(t, dst.F, []byte("this is not a snapshot\n")))
	check("trailer missing", restore(t, dst.F, withoutTrailer(t, stream)))
	// The structural checks below are those of a version-2 stream, which
	// has no checksum to catch the edits first.
	stream = asVersion2(t, stream)
	check("JSON but no header", restore(t, dst.F, []byte("{}\n")))
	check("read error", restoreFrom(t, dst.F, &failingReader{r: bytes.NewReader(stream), err: errors.New("disk on fire")}))
	check("read error midway", restoreFrom(t, dst.F, &failingReader{r: bytes.NewReader(stream[:len(stream)/2]), err: errors.New("disk on fire")}))
	// The stream of mixedLog is:
	//	{"version":2,"index":9,"objects":2}
	//	{"key":{"r":"configmaps","ns":"ns","n":"b"},"uid":"uid-b2","c":8,"m":8,"len":7}
	//	{"b":2}
	//	{"key":{"r":"configmaps","ns":"other","n":"c"},"uid":"uid-c","c":2,"m":9,"len":7}
	//	{"c":2}
	for _, e := range []struct{ name, old, new string }{
		{"old version", `"version":2`, `"version":1`},
		{"future version", `"version":2`, `"version":9`},
		{"more objects announced", `"objects":2`, `"objects":3`},
		{"fewer objects announced", `"objects":2`, `"objects":1`},
		{"negative count", `"objects":2`, `"objects":-2`},
		{"record not JSON", `{"key":{"r":"configmaps","ns":"ns"`, `{"key":{"r":"configmaps","ns":ns`},
		{"null record", `{"key":{"r":"configmaps","ns":"ns","n":"b"},"uid":"uid-b2","c":8,"m":8,"len":7}`, `null`},
		{"record longer than the buffer", `"uid-b2"`, `"` + strings.Repeat("u", 2<<20) + `"`},
		{"data shorter than len", `"len":7}` + "\n" + `{"b":2}`, `"len":8}` + "\n" + `{"b":2}`},
		{"data longer than len", `"len":7}` + "\n" + `{"b":2}`, `"len":6}` + "\n" + `{"b":2}`},
		{"negative len", `"len":7}` + "\n" + `{"b":2}`, `"len":-7}` + "\n" + `{"b":2}`},
		{"huge len", `"len":7}` + "\n" + `{"b":2}`, `"len":9000000000000000}` + "\n" + `{"b":2}`},
		{"data not JSON", `{"b":2}`, `{"b":2,`},
		{"data not an object", `{"b":2}`, `["b",2]`},
		{"empty name", `"n":"b"`, `"n":""`},
		{"empty resource", `"r":"configmaps","ns":"ns"`, `"r":"","ns":"ns"`},
		{"NUL in name", `"n":"b"`, `"n":"b\u0000"`},
		{"NUL in uid", `"uid":"uid-b2"`, `"uid":"uid\u0000b2"`},
		{"repeated key", `"ns":"other","n":"c"`, `"ns":"ns","n":"b"`},
		{"keys out of order", `"ns":"ns","n":"b"`, `"ns":"zz","n":"b"`},
		{"repeated uid", `"uid":"uid-b2"`, `"uid":"uid-c"`},
		{"created at 0", `"c":2,`, `"c":0,`},
		{"created after modified", `"c":2,"m":9`, `"c":5,"m":4`},
		{"modified after the snapshot", `"m":9`, `"m":10`},
	} {
		bad := bytes.Replace(stream, []byte(e.old), []byte(e.new), 1)
		if bytes.Equal(bad, stream) {
			t.Fatalf("%s: %s not found in the stream", e.name, e.old)
		}
		check(e.name, restore(t, dst.F, bad))
	}

	if closed(changed) {
		t.Fatalf("a failed restore woke watchers")
	}
	wantOK(t, dst.mutate(createM(cmKey("dst", "after"), "", `{}`)))
	if evs := next(t, w); len(evs) != 1 || evs[0].Index != dst.index {
		t.Fatalf("watcher after failed restores: %q", eventLines(evs))
	}
}

func TestRestoreEndsWatchers(t *testing.T) {
	src := newHarness(t, fsm.Options{})
	for i := range 10 {
		wantOK(t, src.mutate(createM(cmKey("src", fmt.Sprint(i)), "", `{}`)))
	}
	stream := persist(t, src.F) // at index 10

	dst := newHarness(t, fsm.Options{})
	for i := range 20 {
		wantOK(t, dst.mutate(createM(cmKey("dst", fmt.Sprint(i)), "", `{}`)))
	}
	idle, err := dst.F.Watch(5)
	if err != nil {
		t.Fatal(err)
	}
	ahead, err := dst.F.Watch(20) // at or after the snapshot index, but of the old state
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		_, err := ahead.Next(context.Background())
		blocked <- err
	}()
	<-started
	changed := dst.F.Changed()

	if err := restore(t, dst.F, stream); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !closed(changed) {
		t.Fatalf("Changed() not closed by the restore")
	}
	select {
	case err := <-blocked:
		if !errors.Is(err, fsm.ErrExpired) {
			t.Fatalf("blocked Next after restore: %v, want ErrExpired", err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("blocked Next did not end at the restore")
	}
	if _, err := idle.Next(context.Background()); !errors.Is(err, fsm.ErrExpired) {
		t.Fatalf("idle watcher after restore: %v, want ErrExpired", err)
	}
	for _, from := range []uint64{0, 5, 9} {
		if _, err := dst.F.Watch(from); !errors.Is(err, fsm.ErrExpired) {
			t.Fatalf("Watch(%d) before the restored index 10: %v, want ErrExpired", from, err)
		}
	}

	w, err := dst.F.Watch(10)
	if err != nil {
		t.Fatalf("Watch(10) at the restored index: %v", err)
	}
	for i := uint64(11); i <= 13; i++ {
		wantOK(t, applyAt(t, dst.F, i, encodeMutation(t, createM(cmKey("after", fmt.Sprint(i)), "", `{}`))))
	}
	evs := next(t, w)
	if len(evs) != 3 || evs[0].Index != 11 || evs[2].Index != 13 {
		t.Fatalf("events after the restore: %q", eventLines(evs))
	}
	w12, err := dst.F.Watch(12)
	if err != nil {
		t.Fatal(err)
	}
	if evs := next(t, w12); len(evs) != 1 || evs[0].Index != 13 {
		t.Fatalf("Watch(12): %q", eventLines(evs))
	}
}

func TestPersistSinkFailure(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	for i := range 3 {
		wantOK(t, h.mutate(createM(cmKey("ns", fmt.Sprint(i)), "", `{"blob":"`+strings.Repeat("x", 600_000)+`"}`)))
	}
	for _, failAfter := range []int{0, 100, 1 << 20} {
		snap, err := h.F.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		sink := newBufferSink()
		sink.failAfter = failAfter
		err = snap.Persist(sink)
		if !errors.Is(err, errSinkFull) {
			t.Fatalf("Persist into a sink failing after %d bytes: %v, want errSinkFull", failAfter, err)
		}
		if !sink.cancelled || sink.closed {
			t.Fatalf("failed Persist left the sink closed=%v cancelled=%v, want cancelled", sink.closed, sink.cancelled)
		}
		snap.Release()
	}
}

// TestRestoreNewerVersion: a snapshot of a newer format is refused with a
// message that says so (a downgrade), and the state is kept.
func TestRestoreNewerVersion(t *testing.T) {
	f := fsm.New(fsm.Options{Logger: quietLogger()})
	err := restore(t, f, []byte(`{"version":9,"index":5,"objects":0}`+"\n"))
	if err == nil || !strings.Contains(err.Error(), "newer release") {
		t.Fatalf("restore of a version-9 snapshot: %v, want refused as newer", err)
	}
}
