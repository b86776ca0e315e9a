package logstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The write-ahead log makes an accepted batch durable before the ingest
// answer: VictoriaLogs keeps fresh rows in memory for a second or more,
// so each batch is appended here and fsynced first. A checkpoint
// (store.go) forces the storage's rows to disk, persists the high-water
// marks and then removes the sealed segments.
//
// A segment is a sequence of frames: uint32 length, uint32 CRC-32C of the
// payload, payload (the batch's records as NDJSON). A torn last frame (a
// crash mid-append) ends the segment.

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const walExt = ".wal"

type wal struct {
	dir string
	seq uint64
	f   *os.File
	// size of the open segment.
	size int64
	// written counts the bytes appended to every segment so far (the
	// group commit's positions).
	written int64
}

func walName(seq uint64) string { return fmt.Sprintf("%016d%s", seq, walExt) }

// walSegments lists the segments' sequence numbers, oldest first.
func walSegments(dir string) ([]uint64, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read wal dir: %w", err)
	}
	var out []uint64
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), walExt)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// openWAL starts a new segment after the existing ones.
func openWAL(dir string, after uint64) (*wal, error) {
	w := &wal{dir: dir, seq: after}
	if err := w.rotate(); err != nil {
		return nil, err
	}
	return w, nil
}

// rotate closes the open segment and starts the next one.
func (w *wal) rotate() error {
	if w.f != nil {
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("sync wal segment: %w", err)
		}
		if err := w.f.Close(); err != nil {
			return fmt.Errorf("close wal segment: %w", err)
		}
		w.f = nil
	}
	w.seq++
	f, err := os.OpenFile(filepath.Join(w.dir, walName(w.seq)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create wal segment: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		_ = f.Close()
		return err
	}
	w.f, w.size = f, 0
	return nil
}

// append writes one frame, not synced (see Store.syncWAL), and returns
// the position just past it.
func (w *wal) append(payload []byte) (int64, error) {
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(payload, crcTable))
	if _, err := w.f.Write(hdr[:]); err != nil {
		return 0, fmt.Errorf("append to wal: %w", err)
	}
	if _, err := w.f.Write(payload); err != nil {
		return 0, fmt.Errorf("append to wal: %w", err)
	}
	n := int64(len(hdr) + len(payload))
	w.size += n
	w.written += n
	return w.written, nil
}

func (w *wal) close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// removeBefore deletes the segments older than seq.
func removeSegmentsBefore(dir string, seq uint64) error {
	segs, err := walSegments(dir)
	if err != nil {
		return err
	}
	for _, n := range segs {
		if n >= seq {
			break
		}
		if err := os.Remove(filepath.Join(dir, walName(n))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove wal segment: %w", err)
		}
	}
	return syncDir(dir)
}

// readSegment calls fn with each whole frame's payload; a torn or corrupt
// tail ends the segment (it was never acknowledged).
func readSegment(path string, fn func(payload []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open wal segment: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil
		}
		n := binary.LittleEndian.Uint32(hdr[0:])
		if n > maxBodyBytes*4 {
			return nil
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return nil
		}
		if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
			return nil
		}
		if err := fn(payload); err != nil {
			return err
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}

// writeFileAtomic writes data to path through a synced temporary file
// and a rename.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", filepath.Base(path), err)
	}
	return syncDir(filepath.Dir(path))
}
