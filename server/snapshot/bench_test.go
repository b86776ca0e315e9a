package snapshot_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/server/snapshot"
)

// BenchmarkClusterSnapshot100k: a cluster snapshot of 100,000 ConfigMaps
// (about 1 KiB each) and 1,000 Secrets (sealed): time and size of save
// (the FSM stream in the sealed file) and restore (open, check, rebuild
// the state). Issue 18's benchmark; `make bench` runs it once.
func BenchmarkClusterSnapshot100k(b *testing.B) {
	root := make([]byte, fsm.RootKeySize)
	_, _ = rand.Read(root)
	enc := &fsm.Encryption{RootKey: root, Resources: []string{"secrets"}}
	f := fsm.New(fsm.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := f.SetEncryption(enc); err != nil {
		b.Fatal(err)
	}
	idx := uint64(0)
	apply := func(m fsm.Mutation) {
		e, err := fsm.EncodeMutation(m)
		if err != nil {
			b.Fatal(err)
		}
		idx++
		if res := f.Apply(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: e}).(*fsm.Result); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	key, err := f.NewEncryptionKey(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	apply(key)
	pad := strings.Repeat("x", 900)
	for i := 0; i < 100_000; i++ {
		name := fmt.Sprintf("cm-%06d", i)
		apply(fsm.Mutation{Op: fsm.OpCreate, Key: fsmKey("configmaps", name), UID: "u-" + name,
			Object: []byte(fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q,"namespace":"default"},"data":{"v":%q}}`, name, pad))})
	}
	for i := 0; i < 1_000; i++ {
		name := fmt.Sprintf("s-%04d", i)
		m := fsm.Mutation{Op: fsm.OpCreate, Key: fsmKey("secrets", name), UID: "s-" + name,
			Object: []byte(fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":%q,"namespace":"default"},"data":{"v":"c2VjcmV0"}}`, name))}
		if err := f.Seal(&m); err != nil {
			b.Fatal(err)
		}
		apply(m)
	}
	snap := f.Read()
	var file bytes.Buffer
	b.ResetTimer()
	for range b.N {
		file.Reset()
		start := time.Now()
		err := snapshot.Write(&file, snapshot.Header{Name: "bench", Index: snap.Index()}, "server-secret", snapshot.Keys{},
			func(w io.Writer) error { return f.WriteSnapshot(w, snap) })
		if err != nil {
			b.Fatal(err)
		}
		save := time.Since(start)
		start = time.Now()
		_, _, r, err := snapshot.Open(bytes.NewReader(file.Bytes()), "server-secret")
		if err != nil {
			b.Fatal(err)
		}
		g := fsm.New(fsm.Options{Logger: slog.New(slog.DiscardHandler)})
		if err := g.SetEncryption(enc); err != nil {
			b.Fatal(err)
		}
		if err := g.Restore(io.NopCloser(r)); err != nil {
			b.Fatal(err)
		}
		restore := time.Since(start)
		if g.Index() != snap.Index() {
			b.Fatalf("restored index %d, want %d", g.Index(), snap.Index())
		}
		b.ReportMetric(save.Seconds(), "save-s")
		b.ReportMetric(restore.Seconds(), "restore-s")
		b.ReportMetric(float64(file.Len())/(1<<20), "MiB")
	}
}
