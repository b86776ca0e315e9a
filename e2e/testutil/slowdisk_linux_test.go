package testutil

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSlowDisk: every fdatasync through the mount waits the delay, and
// what is written is read back, by read(2) and through a shared mmap (as
// bbolt reads raft.db).
func TestSlowDisk(t *testing.T) {
	const delay = 30 * time.Millisecond
	mnt := SlowDisk(t, delay)
	f, err := os.OpenFile(filepath.Join(mnt, "db"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := bytes.Repeat([]byte("raft"), 1024)
	for i := 0; i < 3; i++ {
		if _, err := f.WriteAt(page, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < delay {
			t.Fatalf("fdatasync took %s, under the disk's %s delay", took, delay)
		}
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 3*4096, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if !bytes.Equal(m[2*4096:3*4096], page) {
		t.Fatal("the mmap does not show what was written")
	}
	if _, err := f.WriteAt([]byte("next"), 4096); err != nil {
		t.Fatal(err)
	}
	if string(m[4096:4100]) != "next" {
		t.Fatalf("the mmap shows %q after a write, want %q", m[4096:4100], "next")
	}
}
