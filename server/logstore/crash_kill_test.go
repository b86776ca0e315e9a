package logstore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"

	"github.com/skiff-io/skiff/client/logrecord"
)

// The crash child: ingests batches from crashSources concurrent writers
// into the store in $SKIFF_LOGSTORE_CRASH_DIR, printing "ack SOURCE
// OFFSET" once each batch is acknowledged, and checkpoints every 20 ms
// (printing "ck"), until the parent kills it with SIGKILL.
// $SKIFF_LOGSTORE_CRASH_GRACE overrides walGrace.
const crashSources = 4

func TestCrashChild(t *testing.T) {
	dir := os.Getenv("SKIFF_LOGSTORE_CRASH_DIR")
	if dir == "" {
		t.Skip("the child of TestKill9DuringIngestion")
	}
	if g := os.Getenv("SKIFF_LOGSTORE_CRASH_GRACE"); g != "" {
		d, err := time.ParseDuration(g)
		if err != nil {
			t.Fatal(err)
		}
		walGrace = d
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out sync.Mutex
	say := func(format string, a ...any) {
		out.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", a...)
		out.Unlock()
	}
	go func() {
		for {
			time.Sleep(20 * time.Millisecond)
			if err := s.Checkpoint(); err != nil {
				say("error checkpoint %v", err)
				return
			}
			say("ck")
		}
	}()
	base := time.Now().Add(-time.Hour)
	var wg sync.WaitGroup
	for w := 0; w < crashSources; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := fmt.Sprintf("crash/%d", w)
			for off := int64(1); ; off += 500 {
				if _, _, err := s.Ingest(recs(src, off, off+499, base, podFields("ns1", fmt.Sprintf("p%d", w))), nil); err != nil {
					say("error ingest %v", err)
					return
				}
				say("ack %s %d", src, off+499)
			}
		}()
	}
	wg.Wait()
	select {}
}

// runCrashChild starts the child on dir, kills it with SIGKILL once it
// made at least minCheckpoints checkpoints, and returns the highest
// acknowledged offset per source.
func runCrashChild(t *testing.T, dir, grace string, minCheckpoints int) map[string]int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SKIFF_LOGSTORE_CRASH_DIR="+dir, "SKIFF_LOGSTORE_CRASH_GRACE="+grace)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	acked := map[string]int64{}
	checkpoints := 0
	deadline := time.Now().Add(2 * time.Minute)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "ack":
			n, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				t.Fatalf("child said %q", sc.Text())
			}
			acked[f[1]] = n
		case len(f) == 1 && f[0] == "ck":
			checkpoints++
		case len(f) > 0 && f[0] == "error":
			t.Fatalf("child: %s", sc.Text())
		}
		if checkpoints >= minCheckpoints && len(acked) == crashSources {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child made %d checkpoints and acknowledged %v in 2 minutes", checkpoints, acked)
		}
	}
	// SIGKILL mid-ingestion: acknowledgements printed after this point
	// are not read, so every offset in acked was acknowledged before.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = true
	_ = cmd.Wait()
	return acked
}

// storedOffsets counts each stored offset of source (no limit).
func storedOffsets(t *testing.T, s *Store, source string) map[int64]int {
	t.Helper()
	s.storage.DebugFlush()
	q, err := logstorage.ParseQuery(logrecord.FieldSource + ":=" + quote(source) + " | fields " + logrecord.FieldOffset)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.run(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]int{}
	for _, r := range res {
		n, err := strconv.ParseInt(r.Fields[logrecord.FieldOffset], 10, 64)
		if err != nil {
			t.Fatalf("offset %q: %v", r.Fields[logrecord.FieldOffset], err)
		}
		out[n]++
	}
	return out
}

// lostAfterKill runs the child, kills it, reopens the store and counts
// acknowledged records missing and records stored twice.
func lostAfterKill(t *testing.T, grace string, minCheckpoints int) (lost, doubled, acked int64) {
	dir := t.TempDir()
	ack := runCrashChild(t, dir, grace, minCheckpoints)
	s := openTest(t, dir)
	defer s.Close()
	for src, max := range ack {
		got := storedOffsets(t, s, src)
		for off := int64(1); off <= max; off++ {
			if got[off] == 0 {
				lost++
			}
		}
		for _, n := range got {
			if n > 1 {
				doubled += int64(n - 1)
			}
		}
		acked += max
	}
	return lost, doubled, acked
}

// TestKill9DuringIngestion: a process ingesting from 4 writers and
// checkpointing every 20 ms is killed with SIGKILL; after the restart
// every acknowledged record is stored, none twice.
func TestKill9DuringIngestion(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process")
	}
	lost, doubled, acked := lostAfterKill(t, walGrace.String(), 30)
	t.Logf("acknowledged %d records before SIGKILL: %d lost, %d stored twice", acked, lost, doubled)
	if lost > 0 || doubled > 0 {
		t.Fatalf("after SIGKILL and restart: %d of %d acknowledged records lost, %d stored twice", lost, acked, doubled)
	}
}
