package server

import (
	"os"
	"testing"
	"time"
)

// TestRaftTimeoutFor: a fast disk keeps the default; a slow one gets 20
// fsyncs' worth, at most 10 s.
func TestRaftTimeoutFor(t *testing.T) {
	def := 600 * time.Millisecond
	for _, tc := range []struct{ fsync, want time.Duration }{
		{2 * time.Millisecond, def},
		{30 * time.Millisecond, def},
		{45 * time.Millisecond, 900 * time.Millisecond},
		{200 * time.Millisecond, 4 * time.Second},
		{2 * time.Second, 10 * time.Second},
	} {
		if got := raftTimeoutFor(def, tc.fsync); got != tc.want {
			t.Errorf("fsync %s: timeout %s, want %s", tc.fsync, got, tc.want)
		}
	}
}

// TestProbeFsync measures a real directory and leaves nothing behind.
func TestProbeFsync(t *testing.T) {
	dir := t.TempDir()
	p, err := probeFsync(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Median <= 0 || p.Max < p.Median {
		t.Fatalf("probe %+v", p)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("probe left %d files", len(ents))
	}
}
