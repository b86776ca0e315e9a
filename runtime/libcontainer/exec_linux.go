package libcontainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remotecommandserver "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/skiff-io/skiff/nettools"
	"github.com/skiff-io/skiff/runtime/shim"
)

// maxExecSyncOutput caps what ExecSync keeps of each stream.
const maxExecSyncOutput = 16 << 20

// ExecSync runs cmd in a running container and returns its output; a
// non-zero exit is a k8s.io/utils/exec.CodeExitError. timeout is in seconds
// (0: none); on timeout the command is killed.
func (r *Runtime) ExecSync(ctx context.Context, id string, cmd []string, timeout int64) ([]byte, []byte, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(timeout)*time.Second)
		defer cancel()
	}
	var stdout, stderr limitedBuffer
	stdout.limit, stderr.limit = maxExecSyncOutput, maxExecSyncOutput
	err := r.exec(ctx, id, cmd, nil, nopWriteCloser{&stdout}, nopWriteCloser{&stderr}, false, nil)
	return stdout.Bytes(), stderr.Bytes(), err
}

// exec runs cmd in the container with the init process's user,
// environment and working dir, copying streams until it exits.
func (r *Runtime) exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommandserver.TerminalSize) error {
	if len(cmd) == 0 {
		return status.Error(codes.InvalidArgument, "exec: empty command")
	}
	c, err := r.getContainer(id)
	if err != nil {
		return err
	}
	if r.runState(c).state != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return status.Errorf(codes.FailedPrecondition, "container %s is not running", c.ID)
	}
	lc, err := libcontainer.Load(r.runcRoot, c.ID)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	p := &libcontainer.Process{
		Args:             cmd,
		Env:              c.Process.Env,
		Cwd:              c.Process.Cwd,
		UID:              c.Process.UID,
		GID:              c.Process.GID,
		AdditionalGroups: c.Process.AdditionalGroups,
	}
	var (
		copies  sync.WaitGroup
		closers []io.Closer
		con     console.Console
		parent  *os.File
		stdinW  *os.File
	)
	closeAll := func() {
		for _, cl := range closers {
			cl.Close()
		}
	}
	defer closeAll()
	if tty {
		var child *os.File
		parent, child, err = utils.NewSockPair("console")
		if err != nil {
			return err
		}
		closers = append(closers, parent, child)
		p.ConsoleSocket = child
	} else {
		if in != nil {
			sr, sw, err := os.Pipe()
			if err != nil {
				return err
			}
			closers = append(closers, sr, sw)
			p.Stdin, stdinW = sr, sw
		}
		for _, s := range []struct {
			w   io.Writer
			dst *io.Writer
		}{{out, &p.Stdout}, {errOut, &p.Stderr}} {
			if s.w == nil {
				continue
			}
			pr, pw, err := os.Pipe()
			if err != nil {
				return err
			}
			closers = append(closers, pr, pw)
			*s.dst = pw
			copies.Add(1)
			go func(w io.Writer, pr *os.File) {
				defer copies.Done()
				_, _ = io.Copy(w, pr)
			}(s.w, pr)
		}
	}
	if err := lc.Run(p); err != nil {
		return fmt.Errorf("exec in %s: %w", c.ID, err)
	}
	// The process has its ends of the pipes; close ours.
	if p.Stdin != nil {
		p.Stdin.(*os.File).Close()
	}
	for _, w := range []io.Writer{p.Stdout, p.Stderr} {
		if f, ok := w.(*os.File); ok {
			f.Close()
		}
	}
	if tty {
		master, err := utils.RecvFile(parent)
		if err != nil {
			_ = p.Signal(unix.SIGKILL)
			_, _ = p.Wait()
			return fmt.Errorf("exec console: %w", err)
		}
		closers = append(closers, master)
		con, err = console.ConsoleFromFile(master)
		if err != nil {
			_ = p.Signal(unix.SIGKILL)
			_, _ = p.Wait()
			return err
		}
		if out != nil {
			copies.Add(1)
			go func() {
				defer copies.Done()
				_, _ = io.Copy(out, eioReader{master})
			}()
		}
		if in != nil {
			go func() { _, _ = io.Copy(master, in) }()
		}
		if resize != nil {
			go func() {
				for sz := range resize {
					_ = con.Resize(console.WinSize{Width: sz.Width, Height: sz.Height})
				}
			}()
		}
	} else if stdinW != nil {
		go func() {
			_, _ = io.Copy(stdinW, in)
			stdinW.Close()
		}()
	}

	// Kill the process when ctx ends.
	waited := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Signal(unix.SIGKILL)
		case <-waited:
		}
	}()
	ps, werr := p.Wait()
	close(waited)
	// Output still in the pipes is copied; a background child holding them
	// open only delays this for a moment.
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		closeAll()
		<-done
	}
	if ctx.Err() != nil {
		return fmt.Errorf("exec in %s: %w", c.ID, ctx.Err())
	}
	if ps == nil {
		return fmt.Errorf("exec in %s: %w", c.ID, werr)
	}
	code := ps.ExitCode()
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command %q exited with %d", cmd, code), Code: code}
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		return werr
	}
	return nil
}

type eioReader struct{ r io.Reader }

func (e eioReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if errors.Is(err, unix.EIO) {
		return n, io.EOF
	}
	return n, err
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// limitedBuffer keeps the first limit bytes written to it.
type limitedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// streamingRuntime is the streaming.Runtime of a Runtime.
type streamingRuntime struct{ r *Runtime }

// Exec runs a command in a container with streams (kubectl exec). A
// non-zero exit is a CodeExitError, which the streaming server reports as
// the exit code.
func (s streamingRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommandserver.TerminalSize) error {
	if tty {
		errOut = nil // a terminal has one output stream
	}
	return s.r.exec(ctx, id, cmd, in, out, errOut, tty, resize)
}

// Attach connects to a running container's streams through its shim.
func (s streamingRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommandserver.TerminalSize) error {
	c, err := s.r.getContainer(id)
	if err != nil {
		return err
	}
	var o, e io.Writer
	if out != nil {
		o = out
	}
	if errOut != nil && !tty {
		e = errOut
	}
	if !c.config().GetStdin() {
		in = nil
	}
	var sizes chan shim.TerminalSize
	if resize != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel() // ends the forwarding below
		sizes = make(chan shim.TerminalSize)
		go func() {
			defer close(sizes)
			for {
				select {
				case sz, ok := <-resize:
					if !ok {
						return
					}
					select {
					case sizes <- shim.TerminalSize{Width: sz.Width, Height: sz.Height}:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return shim.Attach(ctx, s.r.dirOf(c.ID), in, o, e, sizes)
}

// PortForward connects stream to 127.0.0.1:port inside the sandbox's
// network namespace.
func (s streamingRuntime) PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	s.r.mu.Lock()
	sb, _, ok := lookupID(s.r.sandboxes, sandboxID)
	s.r.mu.Unlock()
	if !ok {
		return notFound("pod sandbox", sandboxID)
	}
	defer stream.Close()
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	var conn net.Conn
	dial := func() error {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var err error
		conn, err = d.DialContext(dctx, "tcp4", addr)
		return err
	}
	var err error
	if sb.NetNS == "" {
		err = dial() // host network
	} else {
		err = nettools.Do(sb.NetNS, dial)
	}
	if err != nil {
		return fmt.Errorf("port-forward to %s in sandbox %s: %w", addr, sb.ID, err)
	}
	defer conn.Close()
	errCh := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		errCh <- err
	}()
	go func() {
		_, err := io.Copy(stream, conn)
		errCh <- err
	}()
	select {
	case err = <-errCh:
		if err == nil {
			// One direction ended; let the other finish.
			select {
			case err = <-errCh:
			case <-ctx.Done():
			}
		}
	case <-ctx.Done():
	}
	return err
}
