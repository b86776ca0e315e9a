package fake

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

func exitError(code int) error {
	return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
}

type fakeStreaming struct{ f *FakeRuntime }

// Exec runs a built-in command; `cat` without arguments copies stdin to
// stdout, `sh` without -c echoes stdin lines until EOF.
func (s *fakeStreaming) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	if out != nil {
		defer out.Close()
	}
	if errw != nil {
		defer errw.Close()
	}
	if len(cmd) > 0 && (cmd[0] == "cat" || cmd[0] == "sh") && len(cmd) == 1 && in != nil && out != nil {
		_, err := io.Copy(out, in)
		return err
	}
	stdout, stderr, err := s.f.ExecSync(ctx, id, cmd, 0)
	if out != nil {
		_, _ = out.Write(stdout)
	}
	if errw != nil {
		_, _ = errw.Write(stderr)
	} else if out != nil {
		_, _ = out.Write(stderr)
	}
	return err
}

// Attach copies stdin to stdout (an echo process) until stdin ends.
func (s *fakeStreaming) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	s.f.mu.Lock()
	c, ok := s.f.containers[id]
	running := ok && c.State == runtimeapi.ContainerState_CONTAINER_RUNNING
	s.f.mu.Unlock()
	if !running {
		return fmt.Errorf("container %s is not running", id)
	}
	if out != nil {
		defer out.Close()
		if in == nil {
			<-ctx.Done()
			return nil
		}
		_, err := io.Copy(out, in)
		return err
	}
	return nil
}

// PortForward connects stream to a simulated server of the sandbox's
// containers (http=PORT or tcp=PORT).
func (s *fakeStreaming) PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	conn, err := s.f.dialSandbox(sandboxID, int(port))
	if err != nil {
		return err
	}
	defer conn.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(conn, stream)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = conn.Close()
		}
	}()
	_, _ = io.Copy(stream, conn)
	wg.Wait()
	return nil // a closed connection is the end of the forward, not an error
}

func (f *FakeRuntime) dialSandbox(sandboxID string, port int) (net.Conn, error) {
	f.mu.Lock()
	var target *FakeContainer
	for _, c := range f.containers {
		if c.SandboxID == sandboxID && c.State == runtimeapi.ContainerState_CONTAINER_RUNNING && (c.script.httpPort == port || c.script.tcpPort == port) {
			target = c
			break
		}
	}
	f.mu.Unlock()
	if target == nil {
		return nil, fmt.Errorf("fake runtime: nothing listens on port %d of sandbox %s", port, sandboxID)
	}
	client, server := net.Pipe()
	go f.serveConn(target, port, server)
	return client, nil
}

// serveConn answers one connection to a simulated server: HTTP on the
// http= port (200 "ok from NAME", 500 while /fail-http exists), an echo on
// the tcp= port.
func (f *FakeRuntime) serveConn(c *FakeContainer, port int, conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if c.script.tcpPort == port {
		_, _ = io.Copy(conn, conn)
		return
	}
	br := bufio.NewReader(conn)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		f.mu.Lock()
		_, failing := c.Files["/fail-http"]
		name := c.Config.Metadata.Name
		f.mu.Unlock()
		code, body := http.StatusOK, "ok from "+name+"\n"
		if failing {
			code, body = http.StatusInternalServerError, "failing\n"
		}
		resp := &http.Response{
			StatusCode: code, ProtoMajor: 1, ProtoMinor: 1, Request: req,
			Header:        http.Header{"Content-Type": {"text/plain"}},
			ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body)),
		}
		if err := resp.Write(conn); err != nil || req.Close {
			return
		}
	}
}
