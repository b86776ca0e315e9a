package logstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/skiff-io/skiff/client/logrecord"
)

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func recs(source string, from, to int64, base time.Time, fields map[string]string) []logrecord.Record {
	var out []logrecord.Record
	for i := from; i <= to; i++ {
		out = append(out, logrecord.Record{Source: source, Offset: i, Time: base.Add(time.Duration(i) * time.Millisecond),
			Msg: fmt.Sprintf("line %d of %s", i, source), Fields: fields})
	}
	return out
}

func podFields(ns, pod string) map[string]string {
	return map[string]string{"kind": logrecord.KindContainer, "node": "n1", "namespace": ns, "pod": pod, "container": "c", "stream": "stdout"}
}

// offsets returns the offsets of a source's stored records, oldest first.
func offsets(t *testing.T, s *Store, source string) []int64 {
	t.Helper()
	res, err := s.Run(context.Background(), Search{Filter: logrecord.FieldSource + ":=" + quote(source), Limit: MaxLimit})
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	var out []int64
	for i := len(res) - 1; i >= 0; i-- {
		n, err := strconv.ParseInt(res[i].Fields[logrecord.FieldOffset], 10, 64)
		if err != nil {
			t.Fatalf("offset %q: %v", res[i].Fields[logrecord.FieldOffset], err)
		}
		out = append(out, n)
	}
	return out
}

func wantRange(t *testing.T, got []int64, from, to int64) {
	t.Helper()
	if int64(len(got)) != to-from+1 {
		t.Fatalf("got %d records, want %d (%v...)", len(got), to-from+1, got[:min(len(got), 10)])
	}
	for i, v := range got {
		if v != from+int64(i) {
			t.Fatalf("record %d has offset %d, want %d", i, v, from+int64(i))
		}
	}
}

func TestIngestDedupAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Minute)
	s := openTest(t, dir)
	acc, dup, err := s.Ingest(recs("a", 1, 100, base, podFields("ns1", "p1")), nil)
	if err != nil || acc != 100 || dup != 0 {
		t.Fatalf("first batch: accepted %d duplicates %d err %v", acc, dup, err)
	}
	// A re-sent overlapping batch stores only what is new.
	acc, dup, err = s.Ingest(recs("a", 51, 150, base, podFields("ns1", "p1")), nil)
	if err != nil || acc != 50 || dup != 50 {
		t.Fatalf("overlap: accepted %d duplicates %d err %v", acc, dup, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	acc, dup, err = s.Ingest(recs("a", 1, 160, base, podFields("ns1", "p1")), nil)
	if err != nil || acc != 10 || dup != 150 {
		t.Fatalf("after restart: accepted %d duplicates %d err %v", acc, dup, err)
	}
	s.storage.DebugFlush()
	wantRange(t, offsets(t, s, "a"), 1, 160)
}

// A crash (no Close, no checkpoint) after acknowledged batches: the WAL
// brings back every record exactly once, including those the storage had
// already flushed on its own.
func TestIngestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Minute)
	s := openTest(t, dir)
	if _, _, err := s.Ingest(recs("a", 1, 50, base, podFields("ns1", "p1")), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Ingest(recs("a", 51, 80, base, podFields("ns1", "p1")), nil); err != nil {
		t.Fatal(err)
	}
	// The storage writes these rows to its files itself ...
	s.flush(allDays(s.storage))
	if _, _, err := s.Ingest(recs("a", 81, 100, base, podFields("ns1", "p1")), nil); err != nil {
		t.Fatal(err)
	}
	// ... and the process dies: a copy of the directory as it is now,
	// without the storage's unflushed rows, is what a restart finds.
	crashed := t.TempDir()
	if err := copyDir(filepath.Join(dir), crashed); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(crashed, "data", "flock.lock"))
	s.Close()
	s = openTest(t, crashed)
	defer s.Close()
	s.storage.DebugFlush()
	wantRange(t, offsets(t, s, "a"), 1, 100)
	acc, dup, err := s.Ingest(recs("a", 90, 110, base, podFields("ns1", "p1")), nil)
	if err != nil || acc != 10 || dup != 11 {
		t.Fatalf("after crash: accepted %d duplicates %d err %v", acc, dup, err)
	}
}

func copyDir(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		return os.WriteFile(target, data, info.Mode())
	})
}

func TestQueryLogsQLAndOrder(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	base := time.Now().Add(-time.Minute)
	batch := recs("a", 1, 20, base, podFields("ns1", "p1"))
	batch[7].Msg = "a rare zebra appears"
	if _, _, err := s.Ingest(batch, nil); err != nil {
		t.Fatal(err)
	}
	s.storage.DebugFlush()
	res, err := s.Run(context.Background(), Search{LogsQL: "zebra"})
	if err != nil || len(res) != 1 || res[0].Msg != "a rare zebra appears" || res[0].Fields["pod"] != "p1" {
		t.Fatalf("full-text: %v %+v", err, res)
	}
	res, err = s.Run(context.Background(), Search{LogsQL: "*", Limit: 5})
	if err != nil || len(res) != 5 || res[0].Fields[logrecord.FieldOffset] != "20" || res[4].Fields[logrecord.FieldOffset] != "16" {
		t.Fatalf("newest first, limit 5: %v %+v", err, res)
	}
	_, err = s.Run(context.Background(), Search{LogsQL: "foo:(("})
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("bad LogsQL: want a ParseError, got %v", err)
	}
}

func TestTailSendsNewRecordsOnly(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	now := time.Now()
	if _, _, err := s.Ingest(recs("a", 1, 3, now, podFields("ns1", "p1")), nil); err != nil {
		t.Fatal(err)
	}
	s.storage.DebugFlush()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan []Result, 10)
	go s.Tail(ctx, Search{Filter: `pod:="p1"`}, func(r []Result) error { got <- r; return nil })
	deadline := time.After(15 * time.Second)
	next := int64(4)
	for {
		if _, _, err := s.Ingest(recs("a", next, next, time.Now(), podFields("ns1", "p1")), nil); err != nil {
			t.Fatal(err)
		}
		s.storage.DebugFlush()
		next++
		select {
		case r := <-got:
			for _, x := range r {
				if n, _ := strconv.Atoi(x.Fields[logrecord.FieldOffset]); n < 4 {
					t.Fatalf("tail sent a record from before it started: %+v", x)
				}
			}
			return
		case <-time.After(1500 * time.Millisecond):
		case <-deadline:
			t.Fatal("tail sent nothing")
		}
	}
}

// Records of one timestamp: the newest page is the highest offsets.
func TestQuerySameTimestampByOffset(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	at := time.Now().Add(-time.Minute)
	var batch []logrecord.Record
	for i := int64(1); i <= 50; i++ {
		batch = append(batch, logrecord.Record{Source: "a", Offset: i, Time: at, Msg: strconv.FormatInt(i, 10), Fields: podFields("ns1", "p1")})
	}
	if _, _, err := s.Ingest(batch, nil); err != nil {
		t.Fatal(err)
	}
	s.storage.DebugFlush()
	res, err := s.Run(context.Background(), Search{Limit: 3})
	if err != nil || len(res) != 3 || res[0].Msg != "50" || res[1].Msg != "49" || res[2].Msg != "48" {
		t.Fatalf("newest 3 of one timestamp: %v %+v", err, res)
	}
}
