package shipper

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/skiff-io/skiff/server/pki"
)

// spoolFormatVersion is the format of the spool's files (STYLE habit 16):
// segments of frames [len uint32][crc32c uint32][payload], payload one
// encoded Record; a cursor file per destination; an id file.
const spoolFormatVersion = 1

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const frameHeader = 8

// spool is the on-disk buffer between the readers and the destinations:
// records get increasing sequence numbers; each destination has a cursor
// (the next sequence it needs); a segment is deleted once every cursor
// passed it, and the oldest segments are dropped when the spool passes
// its bound, the records some destination had not taken counted as
// dropped. One goroutine appends; destinations read concurrently.
type spool struct {
	dir    string
	max    int64
	segMax int64
	id     string

	mu        sync.Mutex
	segs      []*segment // oldest first; the last is written
	size      int64
	nextSeq   uint64 // sequence of the next record appended
	committed uint64 // records below it are synced and readable
	cursors   map[string]uint64
	changed   chan struct{} // closed and replaced on every commit

	w    *os.File
	wbuf *bufio.Writer

	// hints remember where in its segment the record after each read
	// starts, so the next read of that destination does not scan the
	// segment from its start.
	hints map[uint64]readHint
}

type readHint struct {
	path string
	off  int64
}

type segment struct {
	first uint64
	n     uint64
	size  int64
	path  string
}

func (s *segment) end() uint64 { return s.first + s.n }

type spoolMeta struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
}

type cursorFile struct {
	Version int    `json:"version"`
	Next    uint64 `json:"next"`
}

// openSpool opens (or makes) the spool in dir, bounded to max bytes; a
// torn frame at the end of the last segment (a crash mid-write) is cut.
func openSpool(dir string, max int64) (*spool, error) {
	if err := os.MkdirAll(filepath.Join(dir, "cursors"), 0o700); err != nil {
		return nil, err
	}
	s := &spool{dir: dir, max: max, cursors: map[string]uint64{}, changed: make(chan struct{}), hints: map[uint64]readHint{}}
	s.segMax = max / 8
	if s.segMax > 8<<20 {
		s.segMax = 8 << 20
	}
	if s.segMax < 16<<10 {
		s.segMax = 16 << 10
	}
	metaPath := filepath.Join(dir, "spool.json")
	b, err := os.ReadFile(metaPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		var id [8]byte
		if _, err := rand.Read(id[:]); err != nil {
			return nil, err
		}
		s.id = hex.EncodeToString(id[:])
		mb, _ := json.Marshal(spoolMeta{Version: spoolFormatVersion, ID: s.id})
		if err := writeFileAtomic(metaPath, mb); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		var m spoolMeta
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("spool %s: %w", metaPath, err)
		}
		if m.Version != spoolFormatVersion {
			return nil, fmt.Errorf("spool %s: format version %d, this agent reads %d", dir, m.Version, spoolFormatVersion)
		}
		s.id = m.ID
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		s.segs = append(s.segs, &segment{first: first, path: filepath.Join(dir, e.Name())})
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].first < s.segs[j].first })
	for i, seg := range s.segs {
		n, valid, err := scanSegment(seg.path, nil)
		if err != nil {
			return nil, err
		}
		seg.n, seg.size = n, valid
		if i == len(s.segs)-1 {
			if err := os.Truncate(seg.path, valid); err != nil {
				return nil, fmt.Errorf("spool: cut torn segment end: %w", err)
			}
		}
		s.size += valid
		s.nextSeq = seg.end()
	}
	s.committed = s.nextSeq
	cursors, err := os.ReadDir(filepath.Join(dir, "cursors"))
	if err != nil {
		return nil, err
	}
	for _, e := range cursors {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "cursors", e.Name()))
		if err != nil {
			return nil, err
		}
		var c cursorFile
		if err := json.Unmarshal(b, &c); err != nil || c.Version != spoolFormatVersion {
			return nil, fmt.Errorf("spool cursor %s: unreadable (version %d): %v", e.Name(), c.Version, err)
		}
		s.cursors[name] = c.Next
	}
	return s, nil
}

// scanSegment counts the valid frames of a segment (calling fn for each
// with its payload) and returns the byte length they take.
func scanSegment(path string, fn func(payload []byte) error) (n uint64, valid int64, err error) {
	return scanSegmentFrom(path, 0, fn)
}

// scanSegmentFrom is scanSegment from byte offset from (a frame's start);
// valid counts from there too.
func scanSegmentFrom(path string, from int64, fn func(payload []byte) error) (n uint64, valid int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	if from > 0 {
		if _, err := f.Seek(from, io.SeekStart); err != nil {
			return 0, 0, err
		}
	}
	br := bufio.NewReaderSize(f, 256<<10)
	var hdr [frameHeader]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return n, valid, nil // end, or a torn header
		}
		l := binary.LittleEndian.Uint32(hdr[:4])
		if l > 16<<20 {
			return n, valid, nil
		}
		if cap(buf) < int(l) {
			buf = make([]byte, l)
		}
		buf = buf[:l]
		if _, err := io.ReadFull(br, buf); err != nil {
			return n, valid, nil
		}
		if crc32.Checksum(buf, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
			return n, valid, nil
		}
		if fn != nil {
			if err := fn(buf); err != nil {
				return n, valid, err
			}
		}
		n++
		valid += frameHeader + int64(l)
	}
}

func segName(first uint64) string { return fmt.Sprintf("%020d.seg", first) }

// append adds one record (its encoded payload) and returns its sequence;
// it is readable after commit.
func (s *spool) append(payload []byte) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil || s.segs[len(s.segs)-1].size >= s.segMax {
		if err := s.rollLocked(); err != nil {
			return 0, err
		}
	}
	var hdr [frameHeader]byte
	binary.LittleEndian.PutUint32(hdr[:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(payload, crcTable))
	if _, err := s.wbuf.Write(hdr[:]); err != nil {
		return 0, err
	}
	if _, err := s.wbuf.Write(payload); err != nil {
		return 0, err
	}
	seg := s.segs[len(s.segs)-1]
	seg.n++
	seg.size += int64(frameHeader + len(payload))
	s.size += int64(frameHeader + len(payload))
	seq := s.nextSeq
	s.nextSeq++
	return seq, nil
}

// peekSeq is the sequence the next append gets.
func (s *spool) peekSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextSeq
}

func (s *spool) rollLocked() error {
	if s.w != nil {
		if err := s.flushLocked(); err != nil {
			return err
		}
		if err := s.w.Close(); err != nil {
			return err
		}
		s.w = nil
	}
	// Reuse the last segment after a restart while it has room.
	if n := len(s.segs); n > 0 && s.segs[n-1].size < s.segMax && s.w == nil && s.segs[n-1].end() == s.nextSeq {
		f, err := os.OpenFile(s.segs[n-1].path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err == nil {
			s.w, s.wbuf = f, bufio.NewWriterSize(f, 64<<10)
			return nil
		}
	}
	seg := &segment{first: s.nextSeq, path: filepath.Join(s.dir, segName(s.nextSeq))}
	f, err := os.OpenFile(seg.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	s.segs = append(s.segs, seg)
	s.w, s.wbuf = f, bufio.NewWriterSize(f, 64<<10)
	return syncDir(s.dir)
}

func (s *spool) flushLocked() error {
	if err := s.wbuf.Flush(); err != nil {
		return err
	}
	return s.w.Sync()
}

// commit makes the appended records durable and readable, then keeps the
// spool within its bound: it returns, per destination, how many records it
// dropped that the destination had not taken yet.
func (s *spool) commit() (map[string]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil && s.committed != s.nextSeq {
		if err := s.flushLocked(); err != nil {
			return nil, err
		}
	}
	if s.committed != s.nextSeq {
		s.committed = s.nextSeq
		close(s.changed)
		s.changed = make(chan struct{})
	}
	var dropped map[string]uint64
	for s.size > s.max && len(s.segs) > 1 {
		old := s.segs[0]
		for name, next := range s.cursors {
			if next < old.end() {
				from := max(next, old.first)
				if dropped == nil {
					dropped = map[string]uint64{}
				}
				dropped[name] += old.end() - from
				s.cursors[name] = old.end()
			}
		}
		if err := s.removeOldestLocked(); err != nil {
			return dropped, err
		}
	}
	return dropped, s.gcLocked()
}

// gcLocked deletes the segments every destination has passed.
func (s *spool) gcLocked() error {
	for len(s.segs) > 1 && len(s.cursors) > 0 {
		old := s.segs[0]
		for _, next := range s.cursors {
			if next < old.end() {
				return nil
			}
		}
		if err := s.removeOldestLocked(); err != nil {
			return err
		}
	}
	return nil
}

func (s *spool) removeOldestLocked() error {
	old := s.segs[0]
	if err := os.Remove(old.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.segs = s.segs[1:]
	s.size -= old.size
	return nil
}

// bytes is the spool's size on disk.
func (s *spool) bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// cursor is where destination name resumes: its saved cursor, or the
// oldest record held for a new destination.
func (s *spool) cursor(name string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cursors[name]; ok {
		if len(s.segs) > 0 && c < s.segs[0].first {
			c = s.segs[0].first
		}
		return c
	}
	c := s.nextSeq
	if len(s.segs) > 0 {
		c = s.segs[0].first
	}
	s.cursors[name] = c
	return c
}

// ack moves destination name's cursor to next (all before it delivered)
// and saves it.
func (s *spool) ack(name string, next uint64) error {
	s.mu.Lock()
	if cur, ok := s.cursors[name]; ok && cur > next {
		next = cur // the bound dropped past it meanwhile
	}
	s.cursors[name] = next
	s.mu.Unlock()
	b, _ := json.Marshal(cursorFile{Version: spoolFormatVersion, Next: next})
	return writeFileAtomic(filepath.Join(s.dir, "cursors", name+".json"), b)
}

// forget drops destination name's cursor (a master no longer known).
func (s *spool) forget(name string) error {
	s.mu.Lock()
	delete(s.cursors, name)
	err := s.gcLocked()
	s.mu.Unlock()
	if rerr := os.Remove(filepath.Join(s.dir, "cursors", name+".json")); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		return rerr
	}
	return err
}

// wait returns a channel closed once records at or after seq are readable.
func (s *spool) wait(seq uint64) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.committed > seq {
		c := make(chan struct{})
		close(c)
		return c
	}
	return s.changed
}

// read returns up to maxRecords committed payloads (at most maxBytes in
// all, but at least one) from seq on, and the sequence after the last one.
// A seq the bound dropped reads from the oldest record held.
func (s *spool) read(seq uint64, maxRecords int, maxBytes int) ([][]byte, uint64, error) {
	s.mu.Lock()
	committed := s.committed
	var segs []segment
	for _, seg := range s.segs {
		if seg.end() > seq && seg.first < committed {
			segs = append(segs, *seg)
		}
	}
	s.mu.Unlock()
	if len(segs) > 0 && seq < segs[0].first {
		seq = segs[0].first
	}
	var out [][]byte
	size := 0
	for _, seg := range segs {
		i, from := seg.first, int64(0)
		s.mu.Lock()
		if h, ok := s.hints[seq]; ok && h.path == seg.path {
			i, from = seq, h.off
		}
		delete(s.hints, seq)
		s.mu.Unlock()
		stop := errors.New("stop")
		pos := from
		_, _, err := scanSegmentFrom(seg.path, from, func(p []byte) error {
			if i >= committed || len(out) >= maxRecords || (len(out) > 0 && size+len(p) > maxBytes) {
				return stop
			}
			if i >= seq {
				out = append(out, append([]byte(nil), p...))
				size += len(p)
				seq = i + 1
			}
			i++
			pos += int64(frameHeader + len(p))
			return nil
		})
		if err == nil || errors.Is(err, stop) {
			s.mu.Lock()
			if len(s.hints) > 64 {
				clear(s.hints)
			}
			s.hints[i] = readHint{path: seg.path, off: pos}
			s.mu.Unlock()
		}
		if errors.Is(err, os.ErrNotExist) {
			continue // dropped by the bound meanwhile
		}
		if err != nil && !errors.Is(err, stop) {
			return nil, seq, err
		}
		if errors.Is(err, stop) {
			break
		}
	}
	return out, seq, nil
}

// close flushes and closes the segment being written.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	err := s.flushLocked()
	if cerr := s.w.Close(); err == nil {
		err = cerr
	}
	s.w = nil
	return err
}

// writeFileAtomic is the repository's atomic write (a synced temporary
// file renamed over path).
func writeFileAtomic(path string, data []byte) error { return pki.WriteFileAtomic(path, data, 0o600) }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
