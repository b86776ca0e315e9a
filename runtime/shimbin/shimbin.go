// Package shimbin carries the small shim binary (cmd/skiff-shim) inside
// skiff and unpacks it into the data dir, where the runtime starts the
// per-container shims (and through them the containers' inits) from it
// instead of re-executing the whole skiff binary.
//
// `make build` builds cmd/skiff-shim into this directory first and skiff
// with the build tag shimembed, which embeds it. A build without the tag
// (go build ./..., go test) embeds nothing: Install then reports
// ErrNotEmbedded and the caller falls back to re-executing itself.
package shimbin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotEmbedded is returned by Install when this skiff was built without
// the small binary (no shimembed build tag).
var ErrNotEmbedded = errors.New("shimbin: no skiff-shim embedded in this build (built without `make build`)")

// Dir is where, under the data dir, Install writes the binary.
const Dir = "bin"

const prefix = "skiff-shim-"

// Embedded returns the embedded binary, nil if there is none.
func Embedded() []byte { return embedded }

// Install writes the embedded binary into <dataDir>/bin (see InstallBytes)
// and returns its path.
func Install(dataDir string) (string, error) {
	if len(embedded) == 0 {
		return "", ErrNotEmbedded
	}
	return InstallBytes(dataDir, embedded)
}

// InstallBytes writes bin to <dataDir>/bin/skiff-shim-<sha256 prefix>
// (directory 0755, root's as the data dir; file 0755) unless a file of
// that name with that exact content is there already. A file with other
// content (corrupted, truncated) is replaced. The write is atomic: a
// temporary file in the same directory, synced, then renamed. Binaries of
// other versions in the directory are removed (shims running from them
// keep their open inode).
func InstallBytes(dataDir string, bin []byte) (string, error) {
	sum := sha256.Sum256(bin)
	name := prefix + hex.EncodeToString(sum[:8])
	dir := filepath.Join(dataDir, Dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("shimbin: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("shimbin: %w", err)
	}
	path := filepath.Join(dir, name)
	ok, err := sameContent(path, sum)
	if err != nil {
		return "", err
	}
	if !ok {
		if err := writeAtomic(dir, path, bin); err != nil {
			return "", err
		}
	}
	if err := removeOthers(dir, name); err != nil {
		return "", err
	}
	return path, nil
}

// Verify reports whether the file at path still holds bin.
func Verify(path string, bin []byte) (bool, error) {
	return sameContent(path, sha256.Sum256(bin))
}

func sameContent(path string, sum [sha256.Size]byte) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("shimbin: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("shimbin: %w", err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm() != 0o755 {
		return false, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("shimbin: read %s: %w", path, err)
	}
	return bytes.Equal(h.Sum(nil), sum[:]), nil
}

func writeAtomic(dir, path string, bin []byte) error {
	tmp, err := os.CreateTemp(dir, ".tmp-"+prefix+"*")
	if err != nil {
		return fmt.Errorf("shimbin: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing to remove
	if _, err := tmp.Write(bin); err != nil {
		tmp.Close()
		return fmt.Errorf("shimbin: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return fmt.Errorf("shimbin: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("shimbin: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("shimbin: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("shimbin: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("shimbin: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("shimbin: sync %s: %w", dir, err)
	}
	return nil
}

func removeOthers(dir, keep string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("shimbin: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		if n == keep || !(strings.HasPrefix(n, prefix) || strings.HasPrefix(n, ".tmp-"+prefix)) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("shimbin: %w", err)
		}
	}
	return nil
}
