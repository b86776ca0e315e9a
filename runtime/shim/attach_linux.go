package shim

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// TerminalSize is a TTY's size in columns and rows. The package keeps its
// own type (not the streaming library's) so that the small shim binary
// (cmd/skiff-shim) links nothing of k8s.io.
type TerminalSize struct {
	Width, Height uint16
}

// The attach protocol: the client sends one JSON line (attachHello), then
// both sides exchange frames of [type byte][length uint32 BE][payload].
// The shim closes the connection when the container has exited and its
// output is flushed.
const (
	frameStdin      = 'i' // client → shim: stdin data
	frameStdinClose = 'c' // client → shim: end of stdin
	frameResize     = 'r' // client → shim: width, height (uint16 BE each)
	frameStdout     = 'o' // shim → client
	frameStderr     = 'e' // shim → client

	maxFrame = 1 << 20
)

type attachHello struct {
	Stdin  bool `json:"stdin"`
	Stdout bool `json:"stdout"`
	Stderr bool `json:"stderr"`
}

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("attach frame of %d bytes", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, err
	}
	return hdr[0], buf, nil
}

// socketPath returns a path to dir/name that fits in a sockaddr_un (108
// bytes) however long dir is: /proc/self/fd/<fd of dir>/name. The returned
// file must stay open while the path is used.
func socketPath(dir, name string) (string, *os.File, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), dir)
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, name), f, nil
}

// Attach connects to the shim of the container in dir and streams its
// output to out and errOut (nil to skip one) and in (nil for none) to its
// stdin until the container exits, ctx ends or, with stdin, in ends and the
// container closes its output. resize carries terminal sizes for a TTY.
func Attach(ctx context.Context, dir string, in io.Reader, out, errOut io.Writer, resize <-chan TerminalSize) error {
	p, f, err := socketPath(dir, SocketFile)
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", p)
	f.Close()
	if err != nil {
		return fmt.Errorf("attach: container is not running: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	hello, _ := json.Marshal(attachHello{Stdin: in != nil, Stdout: out != nil, Stderr: errOut != nil})
	if _, err := conn.Write(append(hello, '\n')); err != nil {
		return err
	}
	var wmu sync.Mutex
	send := func(typ byte, b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeFrame(conn, typ, b)
	}
	if in != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := in.Read(buf)
				if n > 0 {
					if send(frameStdin, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					_ = send(frameStdinClose, nil)
					return
				}
			}
		}()
	}
	if resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-resize:
					if !ok {
						return
					}
					var b [4]byte
					binary.BigEndian.PutUint16(b[0:], sz.Width)
					binary.BigEndian.PutUint16(b[2:], sz.Height)
					if send(frameResize, b[:]) != nil {
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	br := bufio.NewReader(conn)
	for {
		typ, payload, err := readFrame(br)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		var w io.Writer
		switch typ {
		case frameStdout:
			w = out
		case frameStderr:
			w = errOut
		}
		if w != nil {
			if _, err := w.Write(payload); err != nil {
				return err
			}
		}
	}
}

// attachServer is the shim's side: it fans container output out to the
// attached clients and feeds their input to the container's stdin.
type attachServer struct {
	mu          sync.Mutex
	clients     map[*attachClient]struct{}
	closed      bool
	stdin       io.WriteCloser // nil when the container has no stdin
	stdinOnce   bool
	stdinClosed bool
	resize      func(width, height uint16)
}

type attachClient struct {
	conn   net.Conn
	hello  attachHello
	out    chan [2][]byte // {type, payload}
	closed bool
}

func newAttachServer(stdin io.WriteCloser, stdinOnce bool, resize func(w, h uint16)) *attachServer {
	return &attachServer{clients: map[*attachClient]struct{}{}, stdin: stdin, stdinOnce: stdinOnce, resize: resize}
}

func (s *attachServer) serve(l net.Listener) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go s.handle(conn)
	}
}

func (s *attachServer) handle(conn net.Conn) {
	br := bufio.NewReader(conn)
	line, err := br.ReadBytes('\n')
	if err != nil {
		conn.Close()
		return
	}
	var hello attachHello
	if err := json.Unmarshal(line, &hello); err != nil {
		conn.Close()
		return
	}
	c := &attachClient{conn: conn, hello: hello, out: make(chan [2][]byte, 256)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.clients[c] = struct{}{}
	s.mu.Unlock()

	go func() {
		for f := range c.out {
			if writeFrame(conn, f[0][0], f[1]) != nil {
				break
			}
		}
		conn.Close()
	}()
	for {
		typ, payload, err := readFrame(br)
		if err != nil {
			break
		}
		switch typ {
		case frameStdin:
			if hello.Stdin {
				s.writeStdin(payload)
			}
		case frameStdinClose:
			if hello.Stdin && s.stdinOnce {
				s.closeStdin()
			}
		case frameResize:
			if len(payload) == 4 && s.resize != nil {
				s.resize(binary.BigEndian.Uint16(payload[0:]), binary.BigEndian.Uint16(payload[2:]))
			}
		}
	}
	if hello.Stdin && s.stdinOnce {
		s.closeStdin()
	}
	s.drop(c)
}

func (s *attachServer) writeStdin(b []byte) {
	s.mu.Lock()
	w, closed := s.stdin, s.stdinClosed
	s.mu.Unlock()
	if w != nil && !closed {
		_, _ = w.Write(b)
	}
}

func (s *attachServer) closeStdin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stdin != nil && !s.stdinClosed {
		s.stdinClosed = true
		_ = s.stdin.Close()
	}
}

func (s *attachServer) drop(c *attachClient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[c]; ok {
		delete(s.clients, c)
		if !c.closed {
			c.closed = true
			close(c.out)
		}
	}
}

// broadcast sends output to the clients that want it; a client too slow to
// keep up is disconnected rather than holding up the container and its log.
func (s *attachServer) broadcast(typ byte, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		if (typ == frameStdout && !c.hello.Stdout) || (typ == frameStderr && !c.hello.Stderr) {
			continue
		}
		select {
		case c.out <- [2][]byte{{typ}, b}:
		default:
			delete(s.clients, c)
			c.closed = true
			close(c.out)
		}
	}
}

// closeAll ends every attachment (after the container exited and its output
// was broadcast).
func (s *attachServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.clients {
		delete(s.clients, c)
		if !c.closed {
			c.closed = true
			close(c.out)
		}
	}
}
