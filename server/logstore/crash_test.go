package logstore

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// After a checkpoint the WAL is gone: the storage's files alone must hold
// the rows, searchable by their stream fields, when the process dies.
func TestCheckpointSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	base := time.Now().Add(-time.Minute)
	if _, _, err := s.Ingest(recs("a", 1, 100, base, podFields("ns1", "p1")), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	crashed := t.TempDir()
	if err := copyDir(dir, crashed); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(crashed, "data", "flock.lock"))
	s.Close()
	segs, _ := walSegments(filepath.Join(crashed, "wal"))
	t.Logf("wal segments after the checkpoint: %v", segs)
	s = openTest(t, crashed)
	defer s.Close()
	for _, f := range []string{`source:="a"`, `namespace:="ns1"`, `pod:="p1"`} {
		res, err := s.Run(context.Background(), Search{Filter: f, Limit: MaxLimit})
		if err != nil || len(res) != 100 {
			t.Errorf("%s after the crash: %d records, %v", f, len(res), err)
		}
	}
}

// A checkpoint's flush can miss rows the storage is merging at that
// moment; the sealed WAL segments outlive it, so a crash right after it
// loses nothing even when the storage's files lack those rows.
func TestCrashAfterCheckpointStorageBehind(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	base := time.Now().Add(-time.Minute)
	if _, _, err := s.Ingest(recs("a", 1, 100, base, podFields("ns1", "p1")), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Ingest(recs("a", 101, 120, base, podFields("ns1", "p1")), nil); err != nil {
		t.Fatal(err)
	}
	crashed := t.TempDir()
	if err := copyDir(dir, crashed); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The storage as if none of its rows had reached its files.
	if err := os.RemoveAll(filepath.Join(crashed, "data")); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, crashed)
	defer s.Close()
	s.storage.DebugFlush()
	wantRange(t, offsets(t, s, "a"), 1, 120)
	acc, dup, err := s.Ingest(recs("a", 110, 130, base, podFields("ns1", "p1")), nil)
	if err != nil || acc != 10 || dup != 11 {
		t.Fatalf("after the crash: accepted %d duplicates %d err %v", acc, dup, err)
	}
}
