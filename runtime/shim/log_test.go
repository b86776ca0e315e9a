package shim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCRILoggerFormatPartialLinesAndRotation(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c", "0.log")
	l, err := NewCRILogger(p, 200, 3)
	if err != nil {
		t.Fatal(err)
	}
	l.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC) }
	long := strings.Repeat("x", maxLogLine+10)
	in := "one\r\ntwo\n" + long + "\nlast-no-newline"
	if err := l.CopyLines("stdout", strings.NewReader(in), true, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, f := range []string{p + ".2", p + ".1", p} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		all = append(all, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
	}
	ts := "2026-01-02T03:04:05.000000006Z"
	want := []string{
		ts + " stdout F one",
		ts + " stdout F two",
		ts + " stdout P " + long[:maxLogLine],
		ts + " stdout F " + long[maxLogLine:],
		ts + " stdout P last-no-newline",
	}
	// Rotation keeps 3 files: the first entries rotated out.
	got := all[len(all)-3:]
	for i, w := range want[2:] {
		if got[i] != w {
			t.Errorf("entry %d = %.60q…, want %.60q…", i, got[i], w)
		}
	}
	if _, err := os.Stat(p + ".3"); !os.IsNotExist(err) {
		t.Errorf("more than 3 files kept: %v", err)
	}
}
