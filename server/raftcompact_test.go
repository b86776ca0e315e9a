package server

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// TestCompactRaftDB: a raft.db whose log was mostly compacted away (the
// file stays at its high-water mark) is rewritten smaller at start, with
// every remaining entry and the stable store intact; a file that is not
// mostly free is left alone.
func TestCompactRaftDB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	open := func() *raftboltdb.BoltStore {
		st, err := raftboltdb.New(raftboltdb.Options{Path: path,
			BoltOptions: &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	data := bytes.Repeat([]byte("x"), 4096)
	var logs []*raft.Log
	for i := uint64(1); i <= 6000; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: append([]byte{byte(i)}, data...)})
		if len(logs) == 500 {
			if err := st.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			logs = nil
		}
	}
	if err := st.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	st.Close()
	// Not mostly free: left alone.
	compact := func() (int64, int64, error) {
		used, err := checkRaftDB(path)
		if err != nil {
			return 0, 0, err
		}
		return compactRaftDB(path, used, 1<<20, log)
	}
	if before, after, err := compact(); err != nil || before != after {
		t.Fatalf("full file: %d → %d, %v; want left alone", before, after, err)
	}
	st = open()
	if err := st.DeleteRange(1, 5900); err != nil {
		t.Fatal(err)
	}
	st.Close()
	before, after, err := compact()
	if err != nil {
		t.Fatal(err)
	}
	if after >= before/2 {
		t.Fatalf("raft.db %d → %d bytes, want less than half", before, after)
	}
	t.Logf("raft.db %d → %d bytes", before, after)
	if _, err := os.Stat(path + compactSuffix); !os.IsNotExist(err) {
		t.Fatalf("temporary file left: %v", err)
	}
	st = open()
	defer st.Close()
	first, _ := st.FirstIndex()
	last, _ := st.LastIndex()
	if first != 5901 || last != 6000 {
		t.Fatalf("entries %d..%d after compaction, want 5901..6000", first, last)
	}
	var l raft.Log
	if err := st.GetLog(5950, &l); err != nil || l.Data[0] != byte(5950%256) || len(l.Data) != 4097 {
		t.Fatalf("entry 5950: %v %d bytes", err, len(l.Data))
	}
	if term, err := st.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
		t.Fatalf("CurrentTerm %d, %v", term, err)
	}
}
