package fsm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/skiff-io/skiff/fsm"
)

// Fuzz targets for what a master decodes from other masters through Raft
// (issue 15): log entries (replicated by the leader) and snapshots
// (installed by the leader, or read by Repair). Both start from the state
// in testdata/fuzz-state.snap (a ConfigMap, a Pod with a status, a sealed
// Secret and its data key), sealed with fuzzRootKey, so that seeds can
// update, delete and open what is there. Seeds are in testdata/fuzz.

var fuzzRootKey = bytes.Repeat([]byte{0x5a}, fsm.RootKeySize)

// fuzzFSM is a master with encryption at rest over the fuzz state.
func fuzzFSM(tb testing.TB, base []byte) *fsm.FSM {
	tb.Helper()
	f := fsm.New(fsm.Options{Logger: quietLogger()})
	if err := f.SetEncryption(&fsm.Encryption{RootKey: fuzzRootKey, Resources: []string{"secrets"}}); err != nil {
		tb.Fatal(err)
	}
	if err := f.Restore(&trackedReader{Reader: bytes.NewReader(base)}); err != nil {
		tb.Fatalf("restore the fuzz state: %v", err)
	}
	return f
}

func readFuzzState(f *testing.F) []byte {
	base, err := os.ReadFile("testdata/fuzz-state.snap")
	if err != nil {
		f.Fatal(err)
	}
	return base
}

// reencode checks that v, decoded from a JSON entry body, is a fixed
// point after one more encoding (the first may compact or replace bytes):
// what the leader would write again reads back the same.
func reencode[T any](t *testing.T, typ fsm.MessageType, v T) {
	t.Helper()
	e1, err := fsm.Encode(typ, v)
	if err != nil {
		return // not representable (a RawMessage that is not JSON): never written
	}
	_, b1, err := fsm.DecodeEntry(e1)
	if err != nil {
		t.Fatalf("encoded entry does not decode: %v", err)
	}
	var v2 T
	if err := json.Unmarshal(b1, &v2); err != nil {
		t.Fatalf("encoded %s does not decode: %v", b1, err)
	}
	e2, err := fsm.Encode(typ, v2)
	if err != nil || !bytes.Equal(e1, e2) {
		t.Fatalf("encoding is no fixed point: %q then %q (%v)", e1, e2, err)
	}
}

// FuzzEntry: any Raft entry is refused as corrupt (or empty), or decodes;
// the frame and the binary mutation form are canonical (a decoded entry
// encodes to the same bytes), the JSON forms reach a fixed point; and an
// entry that decodes is applied without panicking, with the same result
// and state on two masters.
func FuzzEntry(f *testing.F) {
	base := readFuzzState(f)
	f.Add(encodeMutation(f, createM(cmKey("default", "b"), "u9", cmJSON("default", "b", "v"))))
	f.Add(encodeBatch(f, deleteM(cmKey("default", "a"), nil), createM(cmKey("default", "a"), "u8", `{}`)))
	f.Add(fsm.EncodeDigest())
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, body, err := fsm.DecodeEntry(data)
		if err != nil {
			if len(data) > 0 && !errors.Is(err, fsm.ErrCorrupt) {
				t.Fatalf("refused with an untyped error: %v", err)
			}
			return
		}
		if data[0] == byte(fsm.FramedType) {
			if again := framed(byte(typ), string(body)); !bytes.Equal(again, data) {
				t.Fatalf("frame of type %d and %q is % x, not % x", typ, body, again, data)
			}
		} else if data[0] != byte(typ) || !bytes.Equal(data[1:], body) {
			t.Fatalf("format-1 entry % x read as type %d, body % x", data, typ, body)
		}
		switch typ {
		case fsm.MutationType:
			m, err := fsm.DecodeMutationBinary(body)
			if err != nil {
				return // the FSM panics on it: no healthy log holds it
			}
			enc := fsm.AppendMutationBinary(nil, &m)
			m2, err := fsm.DecodeMutationBinary(enc)
			if err != nil || !reflect.DeepEqual(m, m2) {
				t.Fatalf("%+v encodes to % x, which decodes to %+v, %v", m, enc, m2, err)
			}
		case fsm.MutateType:
			var m fsm.Mutation
			if json.Unmarshal(body, &m) != nil {
				return
			}
			reencode(t, typ, m)
		case fsm.BatchType:
			var b fsm.Batch
			if json.Unmarshal(body, &b) != nil {
				return
			}
			reencode(t, typ, b)
		case fsm.DigestType:
		default:
			return // unknown type: the FSM panics, as on any undecodable entry
		}
		one, two := fuzzFSM(t, base), fuzzFSM(t, base)
		index := one.Index() + 1
		r1, r2 := applyAt(t, one, index, data), applyAt(t, two, index, data)
		j1, _ := json.Marshal(r1)
		j2, _ := json.Marshal(r2)
		if !bytes.Equal(j1, j2) {
			t.Fatalf("two masters applied it differently:\n%s\n%s", j1, j2)
		}
		if r1.Err != nil && r1.Err.Reason == "" {
			t.Fatalf("refused without a reason: %+v", r1.Err)
		}
		sameState(t, one.Read(), two.Read())
		if one.Index() != index {
			t.Fatalf("index %d after applying entry %d", one.Index(), index)
		}
	})
}

// FuzzRestore: any snapshot stream is restored or refused; a refused one
// leaves the state as it was, and a restored one is consistent (its
// indexes agree with its objects) and persists to a stream that restores
// to the same state on another master.
func FuzzRestore(f *testing.F) {
	base := readFuzzState(f)
	f.Add(base)
	f.Add([]byte(`{"version":3,"index":0,"objects":0}` + "\n" + `{"crc32c":0}` + "\n"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		m := fuzzFSM(t, base)
		before := m.Read()
		if err := restore(t, m, stream); err != nil {
			sameState(t, m.Read(), before)
			return
		}
		restored := m.Read()
		sameState(t, restored, restored)
		sink := newBufferSink()
		snap, err := m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := snap.Persist(sink); err != nil {
			t.Fatalf("a restored state does not persist: %v", err)
		}
		other := fsm.New(fsm.Options{Logger: quietLogger()})
		if err := other.SetEncryption(&fsm.Encryption{RootKey: fuzzRootKey, Resources: []string{"secrets"}}); err != nil {
			t.Fatal(err)
		}
		if err := restore(t, other, sink.Bytes()); err != nil {
			t.Fatalf("persisted stream does not restore: %v", err)
		}
		sameState(t, other.Read(), restored)
	})
}
