package stats

import (
	"errors"
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// duCache measures directories' disk use (du: allocated blocks, and
// inodes) by walking them, and keeps each result until it is due again:
// no sooner than the refresh interval, and no sooner than walkFactor
// times the walk's own duration after it, so that a huge directory costs
// at most 1/walkFactor of a core however large it grows.
type duCache struct {
	mu       sync.Mutex
	interval time.Duration
	entries  map[string]*duEntry
}

const walkFactor = 20

type duEntry struct {
	used, inodes uint64
	measured     time.Time
	due          time.Time
	seen         bool // used in the current collection (else dropped)
}

func newDUCache(interval time.Duration) *duCache {
	return &duCache{interval: interval, entries: map[string]*duEntry{}}
}

// usage returns dir's used bytes and inodes, walking it when due.
func (c *duCache) usage(dir string, now time.Time) (used, inodes uint64, measured time.Time, err error) {
	c.mu.Lock()
	e := c.entries[dir]
	if e != nil && now.Before(e.due) {
		e.seen = true
		c.mu.Unlock()
		return e.used, e.inodes, e.measured, nil
	}
	c.mu.Unlock()
	start := time.Now()
	used, inodes, err = walkUsage(dir)
	if err != nil {
		return 0, 0, time.Time{}, err
	}
	took := time.Since(start)
	due := now.Add(max(c.interval, walkFactor*took))
	c.mu.Lock()
	c.entries[dir] = &duEntry{used: used, inodes: inodes, measured: now, due: due, seen: true}
	c.mu.Unlock()
	return used, inodes, now, nil
}

// sweep forgets the directories not asked for since the last sweep.
func (c *duCache) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if !e.seen {
			delete(c.entries, k)
			continue
		}
		e.seen = false
	}
}

// walkUsage sums the blocks allocated to dir's files (hard links counted
// once) and counts its inodes, staying on dir's filesystem.
func walkUsage(dir string) (used, inodes uint64, err error) {
	var rootDev uint64
	links := map[uint64]bool{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, werr error) error {
		if werr != nil {
			if path == dir {
				return werr
			}
			if errors.Is(werr, fs.ErrNotExist) {
				return nil // removed meanwhile
			}
			return nil // unreadable subtree: measure the rest
		}
		info, ierr := d.Info()
		if ierr != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if path == dir {
			rootDev = uint64(st.Dev)
		} else if uint64(st.Dev) != rootDev {
			if d.IsDir() {
				return filepath.SkipDir // another filesystem mounted inside
			}
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			if links[st.Ino] {
				return nil
			}
			links[st.Ino] = true
		}
		inodes++
		used += uint64(st.Blocks) * 512
		return nil
	})
	return used, inodes, err
}

// statfs fills a filesystem's capacity, free space and inodes, and its
// use as a whole (callers measuring one directory overwrite Used and
// InodesUsed).
func statfs(dir string, out *FsStats) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	bs := uint64(st.Bsize)
	out.Capacity = st.Blocks * bs
	out.Available = st.Bavail * bs
	out.Inodes = st.Files
	out.InodesFree = st.Ffree
	out.Used = (st.Blocks - st.Bfree) * bs
	out.InodesUsed = st.Files - st.Ffree
	return nil
}
