package server

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAppliedMark: the saved index survives a reopen; a torn or damaged
// slot falls back to the other one; a file of another format version
// counts as no mark.
func TestAppliedMark(t *testing.T) {
	path := filepath.Join(t.TempDir(), appliedMarkFile)
	m, idx, err := openAppliedMark(path)
	if err != nil || idx != 0 {
		t.Fatalf("new mark: %d, %v", idx, err)
	}
	for _, i := range []uint64{5, 9, 9, 7, 12} {
		if err := m.Save(i); err != nil {
			t.Fatal(err)
		}
	}
	_ = m.Close()
	reopen := func() uint64 {
		t.Helper()
		m, idx, err := openAppliedMark(path)
		if err != nil {
			t.Fatal(err)
		}
		_ = m.Close()
		return idx
	}
	if got := reopen(); got != 12 {
		t.Fatalf("reopened at %d, want 12", got)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// 12 went to the slot after 9's: damage it, 9 remains.
	slot12 := 0
	if idx, ok := decodeAppliedSlot(b[appliedSlotStride:]); ok && idx == 12 {
		slot12 = appliedSlotStride
	}
	torn := append([]byte(nil), b...)
	torn[slot12+10] ^= 0xff
	if err := os.WriteFile(path, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := reopen(); got != 9 {
		t.Fatalf("with the newest slot torn: %d, want 9", got)
	}
	// The next save goes over the torn slot, not over 9.
	m, _, err = openAppliedMark(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(20); err != nil {
		t.Fatal(err)
	}
	_ = m.Close()
	if got := reopen(); got != 20 {
		t.Fatalf("after saving 20: %d", got)
	}
	other := append([]byte(nil), b...)
	other[4], other[appliedSlotStride+4] = 9, 9
	if err := os.WriteFile(path, other, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := reopen(); got != 0 {
		t.Fatalf("unknown format version read as %d", got)
	}
}
