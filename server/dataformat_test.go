package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDataFormat: a new dir and a dir of an older release get this
// release's format; a newer format is refused with a message that says
// what to do, and the record is left as it was; a damaged record is
// refused.
func TestDataFormat(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "raft")
	read := func() string {
		b, err := os.ReadFile(filepath.Join(dir, dataFormatFile))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if err := checkDataFormat(dir); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != `{"format":2}` {
		t.Fatalf("recorded %s", got)
	}
	if err := os.WriteFile(filepath.Join(dir, dataFormatFile), []byte(`{"format":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkDataFormat(dir); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != `{"format":2}` {
		t.Fatalf("an older format is raised to this release's: %s", got)
	}
	if err := os.WriteFile(filepath.Join(dir, dataFormatFile), []byte(`{"format":3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := checkDataFormat(dir)
	if err == nil || !strings.Contains(err.Error(), "newer Skiff release (data format 3; this release reads up to 2)") ||
		!strings.Contains(err.Error(), "downgrade") {
		t.Fatalf("a newer format: %v", err)
	}
	if got := read(); got != `{"format":3}` {
		t.Fatalf("a refused dir's record changed: %s", got)
	}
	if err := os.WriteFile(filepath.Join(dir, dataFormatFile), []byte(`garbage`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkDataFormat(dir); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("a damaged record: %v", err)
	}
}
