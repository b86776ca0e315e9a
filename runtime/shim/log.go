package shim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Defaults of log rotation, the kubelet's containerLogMaxSize and
// containerLogMaxFiles.
const (
	DefaultLogMaxSize  = 10 << 20
	DefaultLogMaxFiles = 5
)

// maxLogLine is the longest log entry; longer lines are split into partial
// (P) entries, as containerd does.
const maxLogLine = 16 << 10

// CRILogger writes container output in the CRI log format the kubelet reads:
//
//	2024-01-02T15:04:05.123456789Z stdout F a full line
//	2024-01-02T15:04:05.123456789Z stderr P the start of a long line
//
// and rotates the file when it passes maxSize: path becomes path.1 (older
// ones shift to path.2 ...), keeping maxFiles files in all.
type CRILogger struct {
	mu       sync.Mutex
	path     string
	maxSize  int64
	maxFiles int
	f        *os.File
	size     int64
	now      func() time.Time
}

// NewCRILogger opens (appending) the log file at path.
func NewCRILogger(path string, maxSize int64, maxFiles int) (*CRILogger, error) {
	if maxSize <= 0 {
		maxSize = DefaultLogMaxSize
	}
	if maxFiles < 1 {
		maxFiles = DefaultLogMaxFiles
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	l := &CRILogger{path: path, maxSize: maxSize, maxFiles: maxFiles, now: time.Now}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *CRILogger) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// Write writes one entry. partial marks a piece of a longer line.
func (l *CRILogger) Write(stream string, content []byte, partial bool) error {
	tag := "F"
	if partial {
		tag = "P"
	}
	ts := l.now().UTC().Format(time.RFC3339Nano)
	entry := make([]byte, 0, len(ts)+len(stream)+len(content)+5)
	entry = append(entry, ts...)
	entry = append(entry, ' ')
	entry = append(entry, stream...)
	entry = append(entry, ' ')
	entry = append(entry, tag...)
	entry = append(entry, ' ')
	entry = append(entry, content...)
	entry = append(entry, '\n')

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("log closed")
	}
	if l.size > 0 && l.size+int64(len(entry)) > l.maxSize {
		if err := l.rotate(); err != nil {
			return fmt.Errorf("rotate %s: %w", l.path, err)
		}
	}
	n, err := l.f.Write(entry)
	l.size += int64(n)
	return err
}

func (l *CRILogger) rotate() error {
	if err := l.f.Close(); err != nil {
		return err
	}
	l.f = nil
	// path.(max-1) is dropped, path.k becomes path.(k+1), path becomes path.1.
	_ = os.Remove(fmt.Sprintf("%s.%d", l.path, l.maxFiles-1))
	for k := l.maxFiles - 2; k >= 1; k-- {
		_ = os.Rename(fmt.Sprintf("%s.%d", l.path, k), fmt.Sprintf("%s.%d", l.path, k+1))
	}
	if l.maxFiles > 1 {
		if err := os.Rename(l.path, l.path+".1"); err != nil {
			return err
		}
	} else if err := os.Truncate(l.path, 0); err != nil {
		return err
	}
	return l.open()
}

// Close closes the file.
func (l *CRILogger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// CopyLines reads r until EOF and writes each line as an entry of stream;
// tty strips the carriage returns a terminal adds. Each chunk read is also
// passed to tee (attached clients) when it is not nil.
func (l *CRILogger) CopyLines(stream string, r io.Reader, tty bool, tee func([]byte)) error {
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if tee != nil {
				tee(append([]byte(nil), line...))
			}
			full := line[len(line)-1] == '\n'
			content := line
			if full {
				content = content[:len(content)-1]
				if tty && len(content) > 0 && content[len(content)-1] == '\r' {
					content = content[:len(content)-1]
				}
			}
			// A piece without its newline is partial: a part of a long
			// line, or the stream's last output (`echo -n DONE`), which
			// readers must not end with a newline (as containerd logs).
			partial := !full
			if werr := l.Write(stream, content, partial); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF), errors.Is(err, os.ErrClosed):
			return nil
		default:
			return err
		}
	}
}
