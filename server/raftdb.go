package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// errCorruptRaftDB marks a raft.db that failed its checks.
var errCorruptRaftDB = errors.New("corrupt Raft log")

// checkRaftDB checks raft.db before raft-boltdb opens it, so that a
// truncated or scrambled file is refused with one line naming it and the
// recovery (docs/ha.md, "A corrupt raft.db") instead of a panic inside
// bbolt. bbolt checks its meta pages' checksums when it opens a file, but
// with NoFreelistSync it then walks every page and panics on the first bad
// one (bbolt freepages). So the file is first opened read-only (meta
// checks, no walk), then its page tree is walked here, reading the file
// (no mmap): every page bbolt would reach must lie inside the file, carry
// its own id and a branch or leaf type, be reached once, hold its elements
// and keep its keys in b-tree order (bbolt 1.4 on checks that too). It
// returns the bytes of the pages in use (the meta pages and every page
// the walk reached), which a compaction weighs against the file's size; 0
// when there is no file.
func checkRaftDB(path string) (used int64, err error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	corrupt := func(detail error) error {
		return fmt.Errorf("%w: %s is damaged (%v): this master cannot start from it. "+
			"Recover: stop this master, move its data dir aside, remove it from the cluster "+
			"(skiff cluster remove NAME against a healthy master) and start it again with --join, "+
			"so it copies the state from the others; a lone master restores from a backup (docs/ha.md)",
			errCorruptRaftDB, path, detail)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bbolt.ErrTimeout) {
		return 0, fmt.Errorf("%s is in use by another process: %w", path, err)
	}
	if err != nil {
		return 0, corrupt(err)
	}
	if err := db.Close(); err != nil {
		return 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	used, err = walkBolt(f)
	if err != nil {
		return 0, corrupt(err)
	}
	return used, nil
}

// bbolt's file format (version 2), as far as the walk needs it.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltPageHeader  = 16
	boltElement     = 16
	boltBranchPage  = 0x01
	boltLeafPage    = 0x02
	boltBucketLeaf  = 0x01
	boltMetaSumSpan = 56 // bytes of the meta before its checksum
)

type boltMeta struct {
	pageSize         uint32
	root, pgid, txid uint64
}

type boltWalker struct {
	r    io.ReaderAt
	meta boltMeta
	seen map[uint64]bool
}

// walkBolt checks the page tree of the newest valid meta page.
func walkBolt(r io.ReaderAt) (used int64, err error) {
	var best *boltMeta
	for i := range 2 {
		// Page size is not known yet: meta pages are at 0 and pageSize; try
		// the sizes bbolt uses.
		for _, ps := range []int64{4096, 8192, 16384, 65536, 1024, 2048, 32768} {
			if i == 0 && ps != 4096 {
				break
			}
			m, ok := readBoltMeta(r, int64(i)*ps)
			if ok && (i == 0 || int64(m.pageSize) == ps) {
				if best == nil || m.txid > best.txid {
					best = &m
				}
				break
			}
		}
	}
	if best == nil {
		return 0, errors.New("no valid meta page")
	}
	w := &boltWalker{r: r, meta: *best, seen: map[uint64]bool{0: true, 1: true}}
	// Every page up to the high-water mark must be in the file.
	last := make([]byte, 1)
	if end := int64(best.pgid) * int64(best.pageSize); end > 0 {
		if _, err := r.ReadAt(last, end-1); err != nil {
			return 0, fmt.Errorf("its pages need %d bytes, reading the last: %v (truncated)", end, err)
		}
	}
	if _, err := w.page(best.root, 0, nil, nil); err != nil {
		return 0, err
	}
	return int64(len(w.seen)) * int64(best.pageSize), nil
}

func readBoltMeta(r io.ReaderAt, off int64) (boltMeta, bool) {
	b := make([]byte, boltPageHeader+boltMetaSumSpan+8)
	if _, err := r.ReadAt(b, off); err != nil {
		return boltMeta{}, false
	}
	m := b[boltPageHeader:]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	_, _ = h.Write(m[:boltMetaSumSpan]) // a hash never fails
	if h.Sum64() != le.Uint64(m[boltMetaSumSpan:]) {
		return boltMeta{}, false
	}
	ps := le.Uint32(m[8:])
	if ps < 512 || ps > 1<<20 || ps&(ps-1) != 0 {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: ps, root: le.Uint64(m[16:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// page checks the page id and everything below it. The keys of the
// subtree must ascend and lie in [lo, hi) (nil: no bound), the b-tree
// order bbolt (1.4 on) checks in the same walk. It returns the largest key
// of the subtree.
func (w *boltWalker) page(id uint64, depth int, lo, hi []byte) ([]byte, error) {
	if depth > 64 {
		return nil, fmt.Errorf("page %d: tree deeper than 64", id)
	}
	if id < 2 || id >= w.meta.pgid {
		return nil, fmt.Errorf("page %d: out of bounds (high water %d)", id, w.meta.pgid)
	}
	if w.seen[id] {
		return nil, fmt.Errorf("page %d: multiple references", id)
	}
	ps := int64(w.meta.pageSize)
	hdr := make([]byte, boltPageHeader)
	if _, err := w.r.ReadAt(hdr, int64(id)*ps); err != nil {
		return nil, fmt.Errorf("page %d: %v", id, err)
	}
	le := binary.LittleEndian
	overflow := uint64(le.Uint32(hdr[12:]))
	if got := le.Uint64(hdr[0:]); got != id {
		return nil, fmt.Errorf("page %d: header says page %d", id, got)
	}
	if id+overflow >= w.meta.pgid {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the high water %d", id, overflow, w.meta.pgid)
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen[i] {
			return nil, fmt.Errorf("page %d: multiple references", i)
		}
		w.seen[i] = true
	}
	buf := make([]byte, int64(overflow+1)*ps)
	if _, err := w.r.ReadAt(buf, int64(id)*ps); err != nil {
		return nil, fmt.Errorf("page %d: %v", id, err)
	}
	return w.elements(id, buf, depth, lo, hi, true)
}

// elements checks a branch or leaf page held in buf (a page of the file or
// an inline bucket's page, whose key order bbolt does not check: ordered
// false) and returns its largest key.
func (w *boltWalker) elements(id uint64, buf []byte, depth int, lo, hi []byte, ordered bool) ([]byte, error) {
	le := binary.LittleEndian
	flags, count := le.Uint16(buf[8:]), int(le.Uint16(buf[10:]))
	if boltPageHeader+count*boltElement > len(buf) {
		return nil, fmt.Errorf("page %d: %d elements do not fit", id, count)
	}
	if flags != boltBranchPage && flags != boltLeafPage {
		return nil, fmt.Errorf("page %d: invalid page type %#x", id, flags)
	}
	// The keys first: a branch's child is bounded by the next key.
	keys := make([][]byte, count)
	for i := range count {
		off := boltPageHeader + i*boltElement
		e := buf[off : off+boltElement]
		pos, ksize, vsize := int(le.Uint32(e[4:])), int(le.Uint32(e[8:])), int(le.Uint32(e[12:]))
		if flags == boltBranchPage {
			pos, ksize, vsize = int(le.Uint32(e[0:])), int(le.Uint32(e[4:])), 0
		}
		if pos < 0 || ksize < 0 || vsize < 0 || off+pos+ksize+vsize > len(buf) {
			return nil, fmt.Errorf("page %d: element %d runs past the page", id, i)
		}
		keys[i] = buf[off+pos : off+pos+ksize]
	}
	prev := lo // the largest key so far
	for i := range count {
		off := boltPageHeader + i*boltElement
		e := buf[off : off+boltElement]
		key := keys[i]
		if ordered {
			switch {
			case prev != nil && i == 0 && bytes.Compare(prev, key) > 0:
				return nil, fmt.Errorf("page %d: first key below its parent's", id)
			case i > 0 && bytes.Compare(prev, key) >= 0:
				return nil, fmt.Errorf("page %d: key %d out of order", id, i)
			case hi != nil && bytes.Compare(key, hi) >= 0:
				return nil, fmt.Errorf("page %d: key %d not below its parent's next key", id, i)
			}
		}
		if flags == boltBranchPage {
			next := hi
			if i+1 < count {
				next = keys[i+1]
			}
			top, err := w.page(le.Uint64(e[8:]), depth+1, key, next)
			if err != nil {
				return nil, err
			}
			prev = top
			continue
		}
		prev = key
		lf, pos, ksize, vsize := le.Uint32(e[0:]), int(le.Uint32(e[4:])), int(le.Uint32(e[8:])), int(le.Uint32(e[12:]))
		if lf&boltBucketLeaf == 0 {
			continue
		}
		start := off + pos + ksize
		v := buf[start : start+vsize]
		if len(v) < 16 {
			return nil, fmt.Errorf("page %d: bucket element %d too short", id, i)
		}
		// A bucket is a tree of its own.
		if root := le.Uint64(v[0:]); root != 0 {
			if _, err := w.page(root, depth+1, nil, nil); err != nil {
				return nil, err
			}
		} else if len(v) > 16 {
			inline := v[16:]
			if len(inline) < boltPageHeader {
				return nil, fmt.Errorf("page %d: inline bucket %d too short", id, i)
			}
			if _, err := w.elements(id, inline, depth+1, nil, nil, false); err != nil {
				return nil, err
			}
		}
	}
	if flags == boltLeafPage && count == 0 {
		return nil, nil
	}
	return prev, nil
}

// openRaftStores opens dir's Raft log (raft.db) and snapshot store, as a
// running master, --cluster-reset and a restore all must: every append
// fsynced (NoSync false); the freelist not written on each commit (bolt
// rebuilds it when the file is opened, as etcd does), so a commit writes
// the log pages and the meta page only.
func openRaftStores(dir string) (*raftboltdb.BoltStore, *raft.FileSnapshotStore, hclog.Logger, error) {
	if err := checkDataFormat(dir); err != nil {
		return nil, nil, nil, err
	}
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), NoSync: false,
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("raft log store: %w", err)
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
	if err != nil {
		logs.Close()
		return nil, nil, nil, fmt.Errorf("raft snapshot store: %w", err)
	}
	return logs, snaps, hlog, nil
}
