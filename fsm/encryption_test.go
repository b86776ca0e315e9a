package fsm_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
)

func rootKey(t testing.TB) []byte {
	k := make([]byte, fsm.RootKeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// encryptingHarness is an FSM that seals Secrets with root.
func encryptingHarness(t testing.TB, root []byte) *harness {
	t.Helper()
	h := newHarness(t, fsm.Options{})
	if err := h.F.SetEncryption(&fsm.Encryption{RootKey: root, Resources: []string{"secrets"}}); err != nil {
		t.Fatal(err)
	}
	return h
}

// addKey applies the next data key.
func addKey(t testing.TB, h *harness) {
	t.Helper()
	m, err := h.F.NewEncryptionKey(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, h.mutate(m))
}

func secretKey(ns, name string) state.Key {
	return state.Key{Resource: "secrets", Namespace: ns, Name: name}
}

func secretJSON(ns, name, value string) string {
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":%q,"namespace":%q},"data":{"v":%q}}`,
		name, ns, base64.StdEncoding.EncodeToString([]byte(value)))
}

// sealed returns the entry of m after Seal.
func sealedEntry(t testing.TB, f *fsm.FSM, m fsm.Mutation) []byte {
	t.Helper()
	if err := f.Seal(&m); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if len(m.Object) != 0 || len(m.Sealed) == 0 {
		t.Fatalf("Seal of %s left object %q, sealed %d bytes", m.Key, m.Object, len(m.Sealed))
	}
	return encodeMutation(t, m)
}

// leaks says which form of marker b holds ("" if none).
func leaks(b []byte, marker string) string {
	for form, s := range map[string]string{
		"plain":  marker,
		"base64": base64.StdEncoding.EncodeToString([]byte(marker)),
		"hex":    hex.EncodeToString([]byte(marker)),
	} {
		if bytes.Contains(b, []byte(s)) {
			return form
		}
	}
	return ""
}

// TestSecretsSealedInLogAndSnapshot: a Secret's value is in neither its log
// entry nor the snapshot, yet the state (reads, watches) holds it in the
// clear, and a master with the same root key restores it; one with
// another root key refuses the snapshot.
func TestSecretsSealedInLogAndSnapshot(t *testing.T) {
	root := rootKey(t)
	h := encryptingHarness(t, root)
	if err := h.F.Seal(&fsm.Mutation{Op: fsm.OpCreate, Key: secretKey("a", "s"), Object: []byte(secretJSON("a", "s", "x"))}); !errors.Is(err, fsm.ErrNoEncryptionKey) {
		t.Fatalf("Seal before any key = %v, want ErrNoEncryptionKey", err)
	}
	addKey(t, h)
	const marker = "MARKER-7f3c1e-sealed"
	k := secretKey("a", "s")
	entry := sealedEntry(t, h.F, createM(k, "uid-s", secretJSON("a", "s", marker)))
	if form := leaks(entry, marker); form != "" {
		t.Fatalf("log entry holds the marker (%s)", form)
	}
	wantOK(t, h.apply(entry))
	// A batch (JSON entry) too.
	k2 := secretKey("a", "t")
	m2 := createM(k2, "uid-t", secretJSON("a", "t", marker))
	if err := h.F.Seal(&m2); err != nil {
		t.Fatal(err)
	}
	batch := encodeBatch(t, m2, createM(cmKey("a", "c"), "uid-c", cmJSON("a", "c", "plain")))
	if form := leaks(batch, marker); form != "" {
		t.Fatalf("batch entry holds the marker (%s)", form)
	}
	wantOK(t, h.apply(batch))
	for _, key := range []state.Key{k, k2} {
		o := h.F.Read().Get(key)
		if o == nil || leaks(o.Data, marker) != "base64" {
			t.Fatalf("state of %s: %v, want the object in the clear", key, o)
		}
	}
	stream := persist(t, h.F)
	if form := leaks(stream, marker); form != "" {
		t.Fatalf("snapshot holds the marker (%s)", form)
	}
	if !bytes.Contains(stream, []byte(`"sealedWith":"key-000001"`)) {
		t.Fatalf("snapshot header names no sealing key: %.200s", stream)
	}
	if st := h.F.EncryptionStatus(); st.SnapshotKey != "key-000001" || st.SnapshotIndex != h.index || st.Objects != 2 {
		t.Fatalf("status after persist: %+v", st)
	}
	same := encryptingHarness(t, root)
	if err := restore(t, same.F, stream); err != nil {
		t.Fatalf("restore with the same root key: %v", err)
	}
	sameState(t, same.F.Read(), h.F.Read())
	other := encryptingHarness(t, rootKey(t))
	if err := restore(t, other.F, stream); err == nil {
		t.Fatalf("restore with another root key succeeded")
	}
	if err := restore(t, fsm.New(fsm.Options{Logger: quietLogger()}), stream); err == nil {
		t.Fatalf("restore with no root key succeeded")
	}
}

// TestRotation: after a new key, writes are sealed with it, entries sealed
// with the old one still apply (replay from the start), and the snapshot
// is sealed with the new key.
func TestRotation(t *testing.T) {
	root := rootKey(t)
	h := encryptingHarness(t, root)
	var log [][]byte
	applyLogged := func(e []byte) { log = append(log, e); wantOK(t, h.apply(e)) }
	newKey := func() {
		m, err := h.F.NewEncryptionKey(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		applyLogged(encodeMutation(t, m))
	}
	newKey()
	applyLogged(sealedEntry(t, h.F, createM(secretKey("a", "old"), "u1", secretJSON("a", "old", "one"))))
	newKey()
	e := sealedEntry(t, h.F, createM(secretKey("a", "new"), "u2", secretJSON("a", "new", "two")))
	if !bytes.Contains(e, []byte("skiff:enc:aesgcm:v1:key-000002:")) {
		t.Fatalf("entry after rotation not sealed with key-000002")
	}
	applyLogged(e)
	applyLogged(sealedEntry(t, h.F, updateM(secretKey("a", "old"), secretJSON("a", "old", "uno"), nil)))
	st := h.F.EncryptionStatus()
	if len(st.Keys) != 2 || !st.Keys[1].Primary || st.Keys[0].Primary || st.Keys[1].Name != "key-000002" {
		t.Fatalf("keys after rotation: %+v", st.Keys)
	}
	replay := encryptingHarness(t, root)
	for _, e := range log {
		wantOK(t, replay.apply(e))
	}
	sameState(t, replay.F.Read(), h.F.Read())
	if stream := persist(t, h.F); !bytes.Contains(stream, []byte(`"sealedWith":"key-000002"`)) {
		t.Fatalf("snapshot after rotation not sealed with key-000002")
	}
}

// TestSealedValueRefused: a sealed value moved to another object, or
// applied where no root key (or another) is known, is refused the same
// way on every master, and changes nothing.
func TestSealedValueRefused(t *testing.T) {
	root := rootKey(t)
	h := encryptingHarness(t, root)
	addKey(t, h)
	m := createM(secretKey("a", "s"), "u1", secretJSON("a", "s", "v"))
	if err := h.F.Seal(&m); err != nil {
		t.Fatal(err)
	}
	moved := m
	moved.Key = secretKey("a", "other")
	moved.UID = "u2"
	res := h.mutate(moved)
	wantErr(t, res, fsm.ReasonInvalid, moved.Key, 0)
	if h.F.Read().Get(moved.Key) != nil {
		t.Fatalf("moved sealed value was stored")
	}
	// Masters without the key (no root key; another root key and so
	// another data key) refuse it alike.
	for _, f := range []*harness{newHarness(t, fsm.Options{}), encryptingHarness(t, rootKey(t))} {
		if f.F.Encrypts("secrets") {
			addKey(t, f)
		}
		wantErr(t, f.mutate(m), fsm.ReasonInvalid, m.Key, 0)
	}
}
