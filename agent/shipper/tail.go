package shipper

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/skiff-io/skiff/client/logrecord"
)

const (
	// maxRecord bounds a record's message: longer lines are split into
	// records marked partial (all but the last piece).
	maxRecord = 64 << 10
	// readBuf is the read buffer of one file: a physical line longer than
	// it is taken in pieces of this size, so a 10 MiB line without a
	// newline never sits in memory whole.
	readBuf = 32 << 10
)

// tailState is a log stream's checkpoint: the file being read (by
// identity), the offset of its first byte in the stream's offset space,
// the position to resume at (a line start) and the last offset shipped
// per CRI stream (records at or below it are not shipped again).
type tailState struct {
	File   fileID            `json:"file"`
	Base   int64             `json:"base"`
	Pos    int64             `json:"pos"`
	HWM    map[string]int64  `json:"hwm,omitempty"`
	Done   bool              `json:"done,omitempty"`
	Fields map[string]string `json:"fields,omitempty"`
}

type entryHeader struct {
	ts      time.Time
	stream  string
	partial bool
}

// pending is a line of one CRI stream being joined from P entries.
type pending struct {
	active    bool
	buf       []byte
	ts        time.Time
	lineStart int64 // where the first piece's physical line starts
	end       int64 // file position just past the last piece
}

type dropState struct {
	n          int64
	lastReport time.Time
}

// tail reads one container's CRI log (<container dir>/<restart>.log and
// its rotated predecessors) as one stream of records per CRI stream.
type tail struct {
	path   string // the current log's name
	source string // node/pod-uid/container/restart; + "/" + stream
	fields map[string]string
	st     tailState

	f         *os.File
	br        *bufio.Reader
	rpos      int64
	lineStart int64
	inLine    bool
	hdr       entryHeader
	pend      map[string]*pending
	rotated   bool
	finishing bool
	lim       *rate.Limiter
	drops     map[string]*dropState
	m         *metrics
	now       func() time.Time
}

// chain lists a log and its rotated predecessors (path.1 is the newest of
// those), oldest first.
func chain(path string) []string {
	rotated, _ := filepath.Glob(path + ".*")
	type file struct {
		path string
		k    int
	}
	var fs []file
	for _, r := range rotated {
		if k, err := strconv.Atoi(strings.TrimPrefix(r, path+".")); err == nil && k > 0 {
			fs = append(fs, file{r, k})
		}
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].k > fs[j].k })
	out := make([]string, 0, len(fs)+1)
	for _, f := range fs {
		out = append(out, f.path)
	}
	return append(out, path)
}

// open positions the tail: at the checkpointed file and position, or at
// the start of the oldest file of a new stream.
func (t *tail) open() error {
	files := chain(t.path)
	if t.st.File != (fileID{}) {
		for _, p := range files {
			f, err := os.Open(p)
			if err != nil {
				continue
			}
			fi, err := f.Stat()
			if err == nil && idOf(fi) == t.st.File {
				if fi.Size() < t.st.Pos { // truncated while we were down
					t.st.Base += t.st.Pos
					t.st.Pos = 0
				}
				if _, err := f.Seek(t.st.Pos, io.SeekStart); err != nil {
					f.Close()
					return err
				}
				t.setFile(f, t.st.File, t.st.Pos)
				return nil
			}
			f.Close()
		}
		// The checkpointed file is gone (rotated away while we were
		// down): go on with the oldest left, offsets still increasing.
		t.st.Base = t.maxHWM() + 1
	}
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			continue
		}
		t.setFile(f, idOf(fi), 0)
		return nil
	}
	return fmt.Errorf("open %s: %w", t.path, os.ErrNotExist)
}

func (t *tail) setFile(f *os.File, id fileID, pos int64) {
	if t.f != nil && t.f != f {
		t.f.Close()
	}
	t.f, t.st.File, t.rpos, t.lineStart, t.inLine, t.rotated = f, id, pos, pos, false, false
	if t.br == nil {
		t.br = bufio.NewReaderSize(f, readBuf)
	} else {
		t.br.Reset(f)
	}
}

func (t *tail) maxHWM() int64 {
	var m int64
	for _, v := range t.st.HWM {
		m = max(m, v)
	}
	return m
}

func (t *tail) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

// resumePos is where a restart must read again from: the start of the
// earliest line not wholly shipped.
func (t *tail) resumePos() int64 {
	pos := t.rpos
	if t.inLine {
		pos = t.lineStart
	}
	for _, p := range t.pend {
		if p.active && p.lineStart < pos {
			pos = p.lineStart
		}
	}
	return pos
}

// checkpoint is the tail's state to save.
func (t *tail) checkpoint() tailState {
	st := t.st
	st.Pos = t.resumePos()
	st.HWM = make(map[string]int64, len(t.st.HWM))
	for k, v := range t.st.HWM {
		st.HWM[k] = v
	}
	st.Fields = t.fields
	return st
}

// read takes up to budget pieces, appending records to out. It reports
// whether it reached the end of what is written (and the tail is done,
// when finishing).
func (t *tail) read(budget int, out *[]logrecord.Record) (eof bool, err error) {
	if t.f == nil {
		return true, nil
	}
	for n := 0; n < budget; n++ {
		chunk, err := t.br.ReadSlice('\n')
		complete := err == nil
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if !errors.Is(err, io.EOF) {
				return false, err
			}
			if len(chunk) > 0 { // an entry being written: read it again later
				if _, err := t.f.Seek(t.rpos, io.SeekStart); err != nil {
					return false, err
				}
				t.br.Reset(t.f)
			}
			return t.atEOF(out)
		}
		start := t.rpos
		t.rpos += int64(len(chunk))
		text := chunk
		if !t.inLine {
			t.lineStart = start
			t.hdr, text = parseHeader(chunk, t.now)
			t.inLine = true
		}
		if complete {
			t.inLine = false
			text = text[:len(text)-1]
		}
		t.piece(text, complete && !t.hdr.partial, out)
	}
	return false, nil
}

// parseHeader splits "TIME STREAM P|F " off an entry's first piece; a
// line not in the CRI format is taken whole as stdout.
func parseHeader(b []byte, now func() time.Time) (entryHeader, []byte) {
	i := bytes.IndexByte(b, ' ')
	if i > 0 {
		if ts, err := time.Parse(time.RFC3339Nano, string(b[:i])); err == nil {
			rest := b[i+1:]
			if j := bytes.IndexByte(rest, ' '); j > 0 && len(rest) >= j+2 {
				tag := rest[j+1]
				text := rest[j+2:]
				if len(text) > 0 && text[0] == ' ' {
					text = text[1:]
				}
				if tag == 'P' || tag == 'F' {
					return entryHeader{ts: ts, stream: string(rest[:j]), partial: tag == 'P'}, text
				}
			}
		}
	}
	return entryHeader{ts: now(), stream: "stdout"}, b
}

func (t *tail) piece(text []byte, lineEnds bool, out *[]logrecord.Record) {
	p := t.pend[t.hdr.stream]
	if p == nil {
		if t.pend == nil {
			t.pend = map[string]*pending{}
		}
		p = &pending{}
		t.pend[t.hdr.stream] = p
	}
	if p.active && len(p.buf)+len(text) > maxRecord {
		t.emit(t.hdr.stream, p, true, out)
	}
	if !p.active {
		p.active, p.ts, p.lineStart, p.buf = true, t.hdr.ts, t.lineStart, p.buf[:0]
	}
	p.buf = append(p.buf, text...)
	p.end = t.rpos
	if lineEnds {
		t.emit(t.hdr.stream, p, false, out)
	}
}

// emit ships a pending line (or a piece of one): unless a restart's
// replay already shipped it, and within the rate limit.
func (t *tail) emit(stream string, p *pending, partial bool, out *[]logrecord.Record) {
	p.active = false
	off := t.st.Base + p.end
	if t.st.HWM == nil {
		t.st.HWM = map[string]int64{}
	}
	if off <= t.st.HWM[stream] {
		return // shipped before a restart
	}
	t.st.HWM[stream] = off
	now := t.now()
	if t.m != nil {
		t.m.read.Inc()
	}
	d := t.drops[stream]
	if t.lim != nil && !t.lim.AllowN(now, 1) {
		if d == nil {
			d = &dropState{lastReport: now}
			if t.drops == nil {
				t.drops = map[string]*dropState{}
			}
			t.drops[stream] = d
		}
		d.n++
		if t.m != nil {
			t.m.dropped.WithLabelValues("all", "rate_limit").Inc()
		}
		return
	}
	src := t.source + "/" + stream
	if d != nil && d.n > 0 && now.Sub(d.lastReport) >= time.Second {
		// Just before this line's end: an offset no other line has.
		*out = append(*out, droppedRecord(src, off-1, now, t.streamFields(stream, false), d.n, "rate limit"))
		d.n, d.lastReport = 0, now
	}
	*out = append(*out, logrecord.Record{Source: src, Offset: off, Time: p.ts, Msg: string(p.buf), Fields: t.streamFields(stream, partial)})
}

func (t *tail) streamFields(stream string, partial bool) map[string]string {
	f := make(map[string]string, len(t.fields)+2)
	for k, v := range t.fields {
		f[k] = v
	}
	f[logrecord.FieldStream] = stream
	if partial {
		f[logrecord.FieldPartial] = "true"
	}
	return f
}

// flush ships every pending line (at a file's end: partial when the line
// may go on in the next file).
func (t *tail) flush(partial bool, out *[]logrecord.Record) {
	streams := make([]string, 0, len(t.pend))
	for s := range t.pend {
		streams = append(streams, s)
	}
	sort.Strings(streams)
	for _, s := range streams {
		if p := t.pend[s]; p.active {
			t.emit(s, p, partial, out)
		}
	}
}

// reportDrops ships the rate limit's last uncounted drops (a finished
// stream): one past the last offset, which no line can have.
func (t *tail) reportDrops(out *[]logrecord.Record) {
	for stream, d := range t.drops {
		if d.n == 0 {
			continue
		}
		off := t.st.HWM[stream] + 1
		t.st.HWM[stream] = off
		*out = append(*out, droppedRecord(t.source+"/"+stream, off, t.now(), t.streamFields(stream, false), d.n, "rate limit"))
		d.n = 0
	}
}

// atEOF handles the end of what the file holds: truncation, rotation (the
// old file is read to its end, then the next newer one), and the end of a
// finished stream.
func (t *tail) atEOF(out *[]logrecord.Record) (bool, error) {
	fi, err := t.f.Stat()
	if err != nil {
		return false, err
	}
	if fi.Size() < t.rpos { // truncated in place
		t.flush(true, out)
		t.st.Base += t.rpos
		if _, err := t.f.Seek(0, io.SeekStart); err != nil {
			return false, err
		}
		t.setFile(t.f, t.st.File, 0)
		return false, nil
	}
	pi, err := os.Stat(t.path)
	switch {
	case err == nil && idOf(pi) != t.st.File:
		if !t.rotated {
			t.rotated = true // read what came before the rename once more
			return false, nil
		}
		files := chain(t.path)
		next := ""
		for i, p := range files {
			if si, err := os.Stat(p); err == nil && idOf(si) == t.st.File {
				if i+1 < len(files) {
					next = files[i+1]
				}
				break
			}
		}
		if next == "" {
			next = files[0]
		}
		f, err := os.Open(next)
		if err != nil {
			return false, err
		}
		nfi, err := f.Stat()
		if err != nil {
			f.Close()
			return false, err
		}
		t.flush(true, out)
		t.st.Base += t.rpos
		t.setFile(f, idOf(nfi), 0)
		return false, nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return false, err
	}
	if t.finishing {
		t.flush(false, out)
		t.reportDrops(out)
		t.st.Done = true
		t.close()
	}
	return true, nil
}
