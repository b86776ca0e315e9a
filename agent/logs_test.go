package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func writeLog(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := f.WriteString(l + "\n"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadLogs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	// Rotated files: .2 is the oldest.
	writeLog(t, path+".2", "2024-01-01T00:00:01.000000000Z stdout F one")
	writeLog(t, path+".1", "2024-01-01T00:00:02.000000000Z stderr F two")
	writeLog(t, path,
		"2024-01-01T00:00:03.000000000Z stdout P thr",
		"2024-01-01T00:00:03.500000000Z stdout F ee",
		"2024-01-01T00:00:04.000000000Z stdout F four",
		"garbage line")
	read := func(o logOptions) string {
		var b bytes.Buffer
		if err := readLogs(context.Background(), &b, path, o, func() bool { return false }); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if got := read(logOptions{tail: -1}); got != "one\ntwo\nthree\nfour\n" {
		t.Errorf("all = %q", got)
	}
	if got := read(logOptions{tail: 2}); got != "three\nfour\n" {
		t.Errorf("tail 2 = %q", got)
	}
	if got := read(logOptions{tail: 1, timestamps: true}); got != "2024-01-01T00:00:04Z four\n" {
		t.Errorf("timestamps = %q", got)
	}
	since, _ := time.Parse(time.RFC3339, "2024-01-01T00:00:02.5Z")
	if got := read(logOptions{tail: -1, since: since}); got != "three\nfour\n" {
		t.Errorf("since = %q", got)
	}
	if got := read(logOptions{tail: -1, limitBytes: 6}); got != "one\ntw" {
		t.Errorf("limitBytes = %q", got)
	}
}

func TestFollowLogs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	writeLog(t, path, "2024-01-01T00:00:01Z stdout F first")
	var running atomic.Bool
	running.Store(true)
	var b safeBuffer
	done := make(chan error, 1)
	go func() {
		done <- readLogs(context.Background(), &b, path, logOptions{tail: -1, follow: true}, running.Load)
	}()
	waitUntil(t, func() bool { return b.String() == "first\n" })
	writeLog(t, path, "2024-01-01T00:00:02Z stdout F second")
	waitUntil(t, func() bool { return b.String() == "first\nsecond\n" })
	// Rotation: the file moves to .1 and a new one starts.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	writeLog(t, path, "2024-01-01T00:00:03Z stdout F third")
	waitUntil(t, func() bool { return strings.HasSuffix(b.String(), "third\n") })
	running.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end after the container stopped")
	}
}

type safeBuffer struct {
	mu  atomic.Pointer[string]
	buf bytes.Buffer
	ch  chan struct{}
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	n, err := s.buf.Write(p)
	str := s.buf.String()
	s.mu.Store(&str)
	return n, err
}

func (s *safeBuffer) String() string {
	if p := s.mu.Load(); p != nil {
		return *p
	}
	return ""
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A failed container's last output without a newline is its
// FallbackToLogsOnError message as written (conformance "should report
// termination message from log output if TerminationMessagePolicy
// FallbackToLogsOnError is set": `echo -n DONE; false` gives "DONE").
func TestTailLogMessageKeepsLastPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	writeLog(t, path,
		"2024-01-01T00:00:01.000000000Z stdout F first",
		"2024-01-01T00:00:02.000000000Z stdout P DONE")
	if got := tailLogMessage(path, 80, 2048); got != "first\nDONE" {
		t.Errorf("message = %q, want %q", got, "first\nDONE")
	}
	if got := tailLogMessage(path, 1, 2048); got != "DONE" {
		t.Errorf("last line = %q, want %q", got, "DONE")
	}
	if got := tailLogMessage(path, 80, 3); got != "ONE" {
		t.Errorf("2048-byte cap analogue = %q, want %q", got, "ONE")
	}
}
