package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
)

// raft.db stays bounded: Raft compacts its log into snapshots by count
// (--raft-snapshot-threshold, --raft-trailing-logs), but bbolt never gives
// freed pages back to the file system, so a burst of writes leaves the
// file at its high-water mark for good. At start, before Raft opens it, a
// master rewrites raft.db when it is large and mostly free pages, into a
// new file renamed over it (bbolt's Compact, the operation of `bbolt
// compact`); a crash in between leaves the old file whole.

const (
	// compactMinSize: smaller files are left alone.
	compactMinSize = 64 << 20
	// compactFreeRatio: compact when at least this part of the file is
	// free pages.
	compactFreeRatio = 0.5
	compactSuffix    = ".compact"
)

// compactRaftDB compacts path if it is at least minSize bytes and mostly
// free (used: the bytes in use, as checkRaftDB found). It reports the
// sizes before and after (equal when it did nothing).
func compactRaftDB(path string, used, minSize int64, log *slog.Logger) (before, after int64, err error) {
	tmp := path + compactSuffix
	_ = os.Remove(tmp) // a compaction cut short at the last start
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	before = st.Size()
	if before < minSize {
		return before, before, nil
	}
	if free := before - used; float64(free) < compactFreeRatio*float64(before) {
		return before, before, nil
	}
	opts := &bbolt.Options{Timeout: time.Second, ReadOnly: true, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
	src, err := bbolt.Open(path, 0o600, opts)
	if err != nil {
		return before, before, fmt.Errorf("compact %s: %w", path, err)
	}
	defer src.Close()
	start := time.Now()
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return before, before, fmt.Errorf("compact %s: %w", path, err)
	}
	err = bbolt.Compact(dst, src, 64<<20)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		_, err = checkRaftDB(tmp)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return before, before, fmt.Errorf("compact %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return before, before, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	if st, err := os.Stat(path); err == nil {
		after = st.Size()
	}
	log.Info("compacted raft.db", "before", before, "after", after, "free-before", before-used, "took", time.Since(start))
	return before, after, nil
}
