package main

import (
	"strings"
	"testing"
)

func TestLockDataDir(t *testing.T) {
	dir := t.TempDir()
	release, err := lockDataDir(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file: a second open conflicts even
	// in the same process, as another process would.
	if _, err := lockDataDir(dir, "agent"); err == nil || !strings.Contains(err.Error(), "in use by another skiff process (pid ") ||
		!strings.Contains(err.Error(), "server") {
		t.Fatalf("second lock: %v", err)
	}
	release()
	again, err := lockDataDir(dir, "agent")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again()
}
