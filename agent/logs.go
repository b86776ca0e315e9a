package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// logOptions are the query parameters of containerLogs (as
// PodLogOptions).
type logOptions struct {
	follow     bool
	timestamps bool
	tail       int64 // -1: all
	since      time.Time
	limitBytes int64 // 0: no limit
}

func parseLogOptions(q map[string][]string) (logOptions, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	o := logOptions{tail: -1}
	o.follow = get("follow") == "true" || get("follow") == "1"
	o.timestamps = get("timestamps") == "true" || get("timestamps") == "1"
	if v := get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return o, errors.New("tailLines must be a non-negative integer")
		}
		o.tail = n
	}
	if v := get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return o, errors.New("limitBytes must be a positive integer")
		}
		o.limitBytes = n
	}
	if v := get("sinceSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return o, errors.New("sinceSeconds must be a positive integer")
		}
		o.since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if v := get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return o, errors.New("sinceTime must be an RFC3339 time")
		}
		o.since = t
	}
	return o, nil
}

// logLine is one entry of a CRI log file: "<RFC3339Nano> <stream> <P|F> <text>".
type logLine struct {
	ts      time.Time
	stream  string
	partial bool
	text    []byte
}

func parseCRILine(b []byte) (logLine, bool) {
	b = bytes.TrimSuffix(b, []byte("\n"))
	parts := bytes.SplitN(b, []byte(" "), 4)
	if len(parts) < 3 {
		return logLine{}, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(parts[0]))
	if err != nil {
		return logLine{}, false
	}
	l := logLine{ts: ts, stream: string(parts[1]), partial: string(parts[2]) == "P"}
	if len(parts) == 4 {
		l.text = parts[3]
	}
	return l, true
}

// logFiles lists a container log and its rotated predecessors, oldest
// first: N.log.<k> (the runtime shifts N.log to N.log.1, .1 to .2...; the
// highest k is the oldest).
func logFiles(path string) []string {
	rotated, _ := filepath.Glob(path + ".*")
	type file struct {
		path string
		k    int
	}
	var fs []file
	for _, r := range rotated {
		k, err := strconv.Atoi(strings.TrimPrefix(r, path+"."))
		if err == nil && k > 0 {
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

// logWriter renders log entries: full lines joined from partial ones,
// optionally with timestamps, within limitBytes.
type logWriter struct {
	w       io.Writer
	opts    logOptions
	written int64
	pending []byte
	pendTS  time.Time
}

var errLimitReached = errors.New("limit reached")

func (lw *logWriter) add(l logLine) error {
	if !lw.opts.since.IsZero() && l.ts.Before(lw.opts.since) {
		return nil
	}
	if len(lw.pending) == 0 {
		lw.pendTS = l.ts
	}
	lw.pending = append(lw.pending, l.text...)
	if l.partial {
		return nil
	}
	var out []byte
	if lw.opts.timestamps {
		out = append(out, lw.pendTS.UTC().Format(time.RFC3339Nano)...)
		out = append(out, ' ')
	}
	out = append(out, lw.pending...)
	out = append(out, '\n')
	lw.pending = lw.pending[:0]
	if lw.opts.limitBytes > 0 && lw.written+int64(len(out)) > lw.opts.limitBytes {
		out = out[:lw.opts.limitBytes-lw.written]
		_, _ = lw.w.Write(out)
		lw.written += int64(len(out))
		return errLimitReached
	}
	n, err := lw.w.Write(out)
	lw.written += int64(n)
	return err
}

// finish writes what is left of an entry whose end never came (the
// container's last output had no newline), without a newline.
func (lw *logWriter) finish() error {
	if len(lw.pending) == 0 {
		return nil
	}
	var out []byte
	if lw.opts.timestamps {
		out = append(out, lw.pendTS.UTC().Format(time.RFC3339Nano)...)
		out = append(out, ' ')
	}
	out = append(out, lw.pending...)
	lw.pending = lw.pending[:0]
	if lw.opts.limitBytes > 0 && lw.written+int64(len(out)) > lw.opts.limitBytes {
		out = out[:lw.opts.limitBytes-lw.written]
	}
	n, err := lw.w.Write(out)
	lw.written += int64(n)
	return err
}

// readLogs writes the logs of a container instance to w; with follow, it
// keeps writing until the instance exits (running reports whether it
// still runs) or ctx ends.
func readLogs(ctx context.Context, w io.Writer, path string, opts logOptions, running func() bool) error {
	lw := &logWriter{w: w, opts: opts}
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	files := logFiles(path)
	// Tail: collect complete entries from the end.
	if opts.tail >= 0 {
		var lines []logLine
		for _, f := range files {
			ls, _ := readAllLines(f)
			lines = append(lines, ls...)
		}
		// Group into full entries to count them.
		var entries [][]logLine
		var cur []logLine
		for _, l := range lines {
			cur = append(cur, l)
			if !l.partial {
				entries = append(entries, cur)
				cur = nil
			}
		}
		if len(cur) > 0 {
			// The last output had no newline (`echo -n DONE`, or a
			// line still being written): it is the last entry.
			entries = append(entries, cur)
		}
		if int64(len(entries)) > opts.tail {
			entries = entries[int64(len(entries))-opts.tail:]
		}
		for _, e := range entries {
			for _, l := range e {
				if err := lw.add(l); err != nil {
					return nilIfLimit(err)
				}
			}
		}
		if !opts.follow {
			err := lw.finish()
			flush()
			return err
		}
		flush()
		// Follow from the current end of the newest file.
		return followFile(ctx, lw, path, endOffset(path), running, flush)
	}
	for _, f := range files[:len(files)-1] {
		ls, _ := readAllLines(f)
		for _, l := range ls {
			if err := lw.add(l); err != nil {
				return nilIfLimit(err)
			}
		}
	}
	if !opts.follow {
		ls, _ := readAllLines(path)
		for _, l := range ls {
			if err := lw.add(l); err != nil {
				return nilIfLimit(err)
			}
		}
		err := lw.finish()
		flush()
		return err
	}
	return followFile(ctx, lw, path, 0, running, flush)
}

func nilIfLimit(err error) error {
	if errors.Is(err, errLimitReached) {
		return nil
	}
	return err
}

func endOffset(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func readAllLines(path string) ([]logLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []logLine
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 && b[len(b)-1] == '\n' {
			if l, ok := parseCRILine(b); ok {
				out = append(out, l)
			}
		}
		if err != nil {
			return out, nil
		}
	}
}

// followFile reads path from offset, then waits for more, reopening the
// file when it is rotated, until the container stops and everything was
// read.
func followFile(ctx context.Context, lw *logWriter, path string, offset int64, running func() bool, flush func()) error {
	var (
		f   *os.File
		br  *bufio.Reader
		ino uint64
		buf []byte
	)
	open := func(off int64) bool {
		nf, err := os.Open(path)
		if err != nil {
			return false
		}
		if _, err := nf.Seek(off, io.SeekStart); err != nil {
			nf.Close()
			return false
		}
		if f != nil {
			f.Close()
		}
		f, br, ino = nf, bufio.NewReaderSize(nf, 64<<10), inode(nf)
		return true
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	open(offset)
	idle := 0
	for {
		progressed := false
		if br != nil {
			for {
				b, err := br.ReadBytes('\n')
				buf = append(buf, b...)
				if err != nil {
					break // incomplete line stays in buf
				}
				if l, ok := parseCRILine(buf); ok {
					if err := lw.add(l); err != nil {
						return nilIfLimit(err)
					}
				}
				buf = buf[:0]
				progressed = true
			}
		}
		if progressed {
			flush()
			idle = 0
			continue
		}
		// Rotated: a new file at path.
		if fi, err := os.Stat(path); err == nil && (f == nil || statInode(fi) != ino) {
			buf = buf[:0]
			open(0)
			continue
		}
		if !running() {
			idle++
			if idle > 2 {
				err := lw.finish()
				flush()
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func inode(f *os.File) uint64 {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	return statInode(fi)
}

func statInode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// tailLogMessage returns the last lines of a container's log (for
// terminationMessagePolicy FallbackToLogsOnError).
func tailLogMessage(path string, lines int, max int) string {
	var b bytes.Buffer
	_ = readLogs(context.Background(), &b, path, logOptions{tail: int64(lines)}, func() bool { return false })
	out := b.Bytes()
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return string(out)
}

// containerRunning reports whether a container instance still runs.
func (a *Agent) containerRunning(ctx context.Context, id string) bool {
	st, err := a.cfg.Runtime.ContainerStatus(ctx, id, false)
	return err == nil && st.Status.State == runtimeapi.ContainerState_CONTAINER_RUNNING
}
