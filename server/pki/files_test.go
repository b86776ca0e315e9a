package pki

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFileAtomic(path, []byte("one"), 0o640); err != nil {
		t.Fatalf("first write: %v", err)
	}
	if err := WriteFileAtomic(path, []byte("two"), 0o600); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "two" {
		t.Fatalf("content = %q, want two", got)
	}
	if m := fileMode(t, path); m != 0o600 {
		t.Fatalf("mode = %o, want 600", m)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the file (no temp files left)", len(entries))
	}
}

func TestWriteFileAtomicMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "f")
	if err := WriteFileAtomic(path, []byte("x"), 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestKeyPairFiles(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM, err := ca.IssueServer("m1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tls")
	if err := WriteKeyPair(dir, ServerBaseName, certPEM, keyPEM); err != nil {
		t.Fatalf("WriteKeyPair: %v", err)
	}
	if m := fileMode(t, filepath.Join(dir, "server.key")); m != 0o600 {
		t.Fatalf("server.key mode = %o, want 600", m)
	}
	if m := fileMode(t, filepath.Join(dir, "server.crt")); m != 0o644 {
		t.Fatalf("server.crt mode = %o, want 644", m)
	}
	if m := fileMode(t, dir); m != 0o700 {
		t.Fatalf("directory mode = %o, want 700", m)
	}
	gotCert, gotKey, err := ReadKeyPair(dir, ServerBaseName)
	if err != nil {
		t.Fatalf("ReadKeyPair: %v", err)
	}
	if !bytes.Equal(gotCert, certPEM) || !bytes.Equal(gotKey, keyPEM) {
		t.Fatal("read key pair differs from the one written")
	}
}

func TestReadKeyPairMissing(t *testing.T) {
	if _, _, err := ReadKeyPair(t.TempDir(), ServerBaseName); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestReadKeyPairMismatch(t *testing.T) {
	ca := newTestCA(t)
	certA, _, err := ca.IssueClient("a", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, keyB, err := ca.IssueClient("b", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteKeyPair(dir, "x", certA, keyB); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadKeyPair(dir, "x"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want a key mismatch error", err)
	}
}

func TestCAFilesRoundTrip(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	if err := ca.WriteFiles(dir); err != nil {
		t.Fatalf("WriteFiles: %v", err)
	}
	if m := fileMode(t, filepath.Join(dir, "ca.key")); m != 0o600 {
		t.Fatalf("ca.key mode = %o, want 600", m)
	}
	got, err := ReadCAFiles(dir)
	if err != nil {
		t.Fatalf("ReadCAFiles: %v", err)
	}
	if !got.Cert.Equal(ca.Cert) || !publicKeysEqual(got.Key.Public(), ca.Key.Public()) {
		t.Fatal("CA read back differs")
	}
	if _, err := ReadCAFiles(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadCAFiles on empty dir: err = %v, want fs.ErrNotExist", err)
	}
}
