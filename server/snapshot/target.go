package snapshot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// A Target keeps copies of cluster snapshot files beyond the masters'
// disks: a directory (a USB disk, an NFS mount) or an S3-compatible
// bucket. Files are named <snapshot name>.snap, as on the masters. The
// files are sealed (see the package comment), so a target need not be
// trusted with the cluster's secrets, only with keeping the bytes.
type Target interface {
	// String names the target for users: "dir:/mnt/backup",
	// "s3://bucket/folder".
	String() string
	// Put stores the file name from r (size bytes).
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	// Open reads the file name back; os.ErrNotExist when absent.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// List names the snapshot files the target holds.
	List(ctx context.Context) ([]string, error)
	// Delete removes the file name; absent is not an error.
	Delete(ctx context.Context, name string) error
}

// Ext ends every snapshot file's name.
const Ext = ".snap"

// DirTarget keeps copies in a local directory.
type DirTarget struct{ Dir string }

func (d DirTarget) String() string { return "dir:" + d.Dir }

func (d DirTarget) path(name string) string { return filepath.Join(d.Dir, name+Ext) }

// Put writes through a temporary file, synced and renamed, so a copy is
// either whole or absent.
func (d DirTarget) Put(_ context.Context, name string, r io.Reader, _ int64) error {
	_, err := WriteFile(d.Dir, name, func(w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	})
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", name, d, err)
	}
	return nil
}

// WriteFile writes the snapshot file name (without Ext) in dir through a
// temporary file, buffered, synced and renamed, then syncs dir: the file
// is either whole or absent. It returns the file's path.
func WriteFile(dir, name string, write func(io.Writer) error) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name+Ext)
	tmp, err := os.CreateTemp(dir, "."+name+"-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	bw := bufio.NewWriterSize(tmp, 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return path, nil
}

func (d DirTarget) Open(_ context.Context, name string) (io.ReadCloser, error) {
	return os.Open(d.path(name))
}

func (d DirTarget) List(context.Context) ([]string, error) {
	ents, err := os.ReadDir(d.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), Ext); ok && e.Type().IsRegular() && !strings.HasPrefix(name, ".") {
			out = append(out, name)
		}
	}
	return out, nil
}

func (d DirTarget) Delete(_ context.Context, name string) error {
	if err := os.Remove(d.path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
