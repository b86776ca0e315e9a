package shimbin

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallBytesOnceAndRewritesCorruptFile(t *testing.T) {
	data := t.TempDir()
	bin := bytes.Repeat([]byte("skiff-shim\x00"), 1000)
	path, err := InstallBytes(data, bin)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != filepath.Join(data, Dir) || !strings.HasPrefix(filepath.Base(path), prefix) {
		t.Fatalf("installed at %s", path)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v, want 0755", st.Mode().Perm())
	}
	dst, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm() != 0o755 {
		t.Fatalf("dir mode %v, want 0755", dst.Mode().Perm())
	}

	// A second install with the same content leaves the file alone (same inode).
	again, err := InstallBytes(data, bin)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := os.Stat(again)
	if err != nil {
		t.Fatal(err)
	}
	if again != path || !os.SameFile(st, st2) {
		t.Fatalf("second install rewrote the file (%s)", again)
	}

	// A corrupted file is replaced by the right content.
	if err := os.WriteFile(path, []byte("garbage"), 0o755); err != nil {
		t.Fatal(err)
	}
	if ok, err := Verify(path, bin); err != nil || ok {
		t.Fatalf("Verify of a corrupted file: %v, %v", ok, err)
	}
	if _, err := InstallBytes(data, bin); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bin) {
		t.Fatalf("corrupted file not rewritten (%d bytes)", len(got))
	}

	// A new version gets its own name; the old one is removed.
	newer := append(bytes.Clone(bin), 'x')
	npath, err := InstallBytes(data, newer)
	if err != nil {
		t.Fatal(err)
	}
	if npath == path {
		t.Fatal("a different binary got the same name")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("old version still there: %v", err)
	}
	ents, err := os.ReadDir(filepath.Dir(npath))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Fatalf("directory holds %d files, want 1 (no temporaries)", len(ents))
	}
}

func TestInstallWithoutEmbeddedBinary(t *testing.T) {
	if len(Embedded()) != 0 {
		t.Skip("built with the shimembed tag")
	}
	if _, err := Install(t.TempDir()); !errors.Is(err, ErrNotEmbedded) {
		t.Fatalf("Install: %v, want ErrNotEmbedded", err)
	}
}
