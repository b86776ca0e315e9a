package logstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// marks are the high-water marks: per source, the highest offset stored
// and when it last moved (unix seconds; marks idle for longer than the
// retention are pruned).
type marks struct {
	m map[string]mark
}

type mark struct {
	offset int64
	seen   int64
}

const marksHeader = "skiff-logstore-hwm"

func (m *marks) get(src string) (int64, bool) {
	v, ok := m.m[src]
	return v.offset, ok
}

func (m *marks) getOr(src string) int64 {
	v, ok := m.m[src]
	if !ok {
		return -1
	}
	return v.offset
}

func (m *marks) set(src string, off, now int64) { m.m[src] = mark{offset: off, seen: now} }

func (m *marks) prune(before int64) {
	for k, v := range m.m {
		if v.seen < before {
			delete(m.m, k)
		}
	}
}

// encode: a header line with the format version, then one line per
// source: offset, last-moved time, quoted source.
func (m *marks) encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %d\n", marksHeader, formatVersion)
	for k, v := range m.m {
		b.WriteString(strconv.FormatInt(v.offset, 10))
		b.WriteByte(' ')
		b.WriteString(strconv.FormatInt(v.seen, 10))
		b.WriteByte(' ')
		b.WriteString(strconv.Quote(k))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func loadMarks(path string) (*marks, error) {
	m := &marks{m: map[string]mark{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read high-water marks: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	if !sc.Scan() {
		return nil, fmt.Errorf("high-water marks %s: empty", path)
	}
	var version int
	if _, err := fmt.Sscanf(sc.Text(), marksHeader+" %d", &version); err != nil || version != formatVersion {
		return nil, fmt.Errorf("high-water marks %s: unknown format %q", path, sc.Text())
	}
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("high-water marks %s: bad line %q", path, sc.Text())
		}
		off, err1 := strconv.ParseInt(parts[0], 10, 64)
		seen, err2 := strconv.ParseInt(parts[1], 10, 64)
		src, err3 := strconv.Unquote(parts[2])
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("high-water marks %s: %w", path, err)
		}
		m.m[src] = mark{offset: off, seen: seen}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("high-water marks %s: %w", path, err)
	}
	return m, nil
}
