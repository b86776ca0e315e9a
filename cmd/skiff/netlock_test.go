package main

import (
	"strings"
	"testing"
)

func TestLockNodeNetwork(t *testing.T) {
	dir := t.TempDir()
	release, err := lockNodeNetworkIn(dir, "/data/one")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockNodeNetworkIn(dir, "/data/two"); err == nil || !strings.Contains(err.Error(), "already runs the pod network") ||
		!strings.Contains(err.Error(), "/data/one") {
		t.Fatalf("second agent in the namespace: %v, want a refusal naming the first", err)
	}
	release()
	release2, err := lockNodeNetworkIn(dir, "/data/two")
	if err != nil {
		t.Fatalf("after the first released: %v", err)
	}
	release2()
}
