package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientportforward "k8s.io/client-go/tools/portforward"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"
)

// Remote command over WebSocket, protocol v5.channel.k8s.io.
//
// kubectl 1.30 and later (client-go's WebSocket executor) ask for exec and
// attach over WebSocket with the v5 subprotocol only, and fall back to SPDY
// when the upgrade is refused. The cri-streaming server speaks WebSocket up
// to v4, so the kubelet serves v5 itself: the same five channels as v4
// (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize), plus the CLOSE signal
// by which the client half-closes stdin (wsstream handles it, and the
// command then reads EOF). The error channel carries one metav1.Status at
// the end: Success, or Failure with reason NonZeroExitCode and the exit code
// as an ExitCode cause, as v4 does.

// v5Protocol is the subprotocol served here.
const v5Protocol = remotecommand.StreamProtocolV5Name

// wsIdleTimeout closes a stream that has seen no traffic for this long.
const wsIdleTimeout = 4 * time.Hour

// Channel numbers of the remote command protocol.
const (
	chStdin = iota
	chStdout
	chStderr
	chError
	chResize
)

// remoteStreams are the caller's ends of one remote command session.
type remoteStreams struct {
	stdin          io.Reader
	stdout, stderr io.WriteCloser
	tty            bool
	resize         <-chan remotecommand.TerminalSize
}

// isWebSocketV5 reports whether r asks for a WebSocket upgrade with the v5
// remote command subprotocol.
func isWebSocketV5(r *http.Request) bool {
	return wsstream.IsWebSocketRequestWithStreamCloseProtocol(r)
}

// serveRemoteCommandV5 upgrades r to a v5 WebSocket session with the
// channels that stdin/stdout/stderr/tty ask for and runs fn over them.
func serveRemoteCommandV5(w http.ResponseWriter, r *http.Request, stdin, stdout, stderr, tty bool, fn func(ctx context.Context, s remoteStreams) error) {
	if tty {
		// A terminal merges stderr into stdout, as the other protocols do.
		stderr = false
	}
	channels := make([]wsstream.ChannelType, 5)
	if stdin {
		channels[chStdin] = wsstream.ReadChannel
	}
	if stdout {
		channels[chStdout] = wsstream.WriteChannel
	}
	if stderr {
		channels[chStderr] = wsstream.WriteChannel
	}
	channels[chError] = wsstream.WriteChannel
	if tty {
		channels[chResize] = wsstream.ReadChannel
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		v5Protocol: {Binary: true, Channels: channels},
	})
	conn.SetIdleTimeout(wsIdleTimeout)
	_, streams, err := conn.Open(w, r)
	if err != nil {
		// Open has answered the client already.
		return
	}
	defer conn.Close()

	// An empty message on the first writable channel tells the client the
	// session is established.
	switch {
	case stdout:
		_, _ = streams[chStdout].Write(nil)
	case stderr:
		_, _ = streams[chStderr].Write(nil)
	default:
		_, _ = streams[chError].Write(nil)
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	s := remoteStreams{tty: tty}
	if stdin {
		s.stdin = streams[chStdin]
	}
	if stdout {
		s.stdout = streams[chStdout]
	}
	if stderr {
		s.stderr = streams[chStderr]
	}
	if tty {
		resize := make(chan remotecommand.TerminalSize)
		go readResizeEvents(ctx, streams[chResize], resize)
		s.resize = resize
	}
	runErr := fn(ctx, s)
	writeRemoteStatus(streams[chError], runErr)
}

// readResizeEvents decodes the JSON terminal sizes the client sends on the
// resize channel until it ends or ctx is done.
func readResizeEvents(ctx context.Context, r io.Reader, out chan<- remotecommand.TerminalSize) {
	defer close(out)
	dec := json.NewDecoder(r)
	for {
		var size remotecommand.TerminalSize
		if err := dec.Decode(&size); err != nil {
			return
		}
		select {
		case out <- size:
		case <-ctx.Done():
			return
		}
	}
}

// writeRemoteStatus writes the session's outcome on the error channel.
func writeRemoteStatus(w io.Writer, err error) {
	st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess}
	if err != nil {
		st.Status = metav1.StatusFailure
		st.Message = err.Error()
		var exitErr utilexec.ExitError
		if errors.As(err, &exitErr) && exitErr.Exited() {
			st.Reason = "NonZeroExitCode"
			st.Message = fmt.Sprintf("command terminated with non-zero exit code: %v", err)
			st.Details = &metav1.StatusDetails{Causes: []metav1.StatusCause{{
				Type:    "ExitCode",
				Message: strconv.Itoa(exitErr.ExitStatus()),
			}}}
		} else {
			st.Reason = metav1.StatusReasonInternalError
			st.Code = http.StatusInternalServerError
		}
	}
	b, mErr := json.Marshal(st)
	if mErr != nil {
		return
	}
	_, _ = w.Write(b)
}

// Port forwarding over WebSocket (kubectl 1.31+): the client asks for the
// subprotocol "SPDY/3.1+portforward.k8s.io" and then speaks the SPDY
// port-forward protocol inside the WebSocket's binary messages. The kubelet
// accepts the WebSocket, wraps it as a net.Conn and hands the cri-streaming
// server a request that looks like a SPDY upgrade, whose hijacked
// connection is that tunnel.

// tunnelProtocol is the WebSocket subprotocol of tunneled port forwarding.
const tunnelProtocol = "SPDY/3.1+" + portforward.ProtocolV1Name

// isWebSocketTunnel reports whether r asks for port forwarding tunneled in
// a WebSocket.
func isWebSocketTunnel(r *http.Request) bool {
	return wsstream.IsWebSocketRequestWithTunnelingProtocol(r)
}

// serveTunneledSPDY upgrades r to a WebSocket and serves the SPDY request
// r2 (built by the caller) over it with serve.
func serveTunneledSPDY(w http.ResponseWriter, r *http.Request, serve func(w http.ResponseWriter, r *http.Request)) {
	up := gwebsocket.Upgrader{
		Subprotocols: []string{tunnelProtocol},
		// Callers are authenticated by client certificate (the API
		// server); there is no browser origin to check.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client.
	}
	if ws.Subprotocol() != tunnelProtocol {
		_ = ws.WriteControl(gwebsocket.CloseMessage,
			gwebsocket.FormatCloseMessage(gwebsocket.CloseProtocolError, "subprotocol "+tunnelProtocol+" required"),
			time.Now().Add(time.Second))
		_ = ws.Close()
		return
	}
	conn := clientportforward.NewTunnelingConnection("kubelet", ws)
	defer conn.Close()

	r2 := r.Clone(r.Context())
	r2.Header = http.Header{}
	r2.Header.Set("Connection", "Upgrade")
	r2.Header.Set("Upgrade", "SPDY/3.1")
	r2.Header.Set("X-Stream-Protocol-Version", portforward.ProtocolV1Name)
	serve(&tunnelResponseWriter{conn: conn, header: http.Header{}}, r2)
}

// tunnelResponseWriter is the http.ResponseWriter the SPDY upgrader sees:
// the 101 it writes is implied by the WebSocket upgrade already done, and
// hijacking yields the tunnel.
type tunnelResponseWriter struct {
	conn   net.Conn
	header http.Header
	status int
}

func (t *tunnelResponseWriter) Header() http.Header { return t.header }

func (t *tunnelResponseWriter) WriteHeader(code int) { t.status = code }

// Write carries an error body written instead of an upgrade; it goes
// nowhere useful, as the client expects SPDY frames, so the tunnel is
// closed and the client sees the stream end.
func (t *tunnelResponseWriter) Write(b []byte) (int, error) {
	_ = t.conn.Close()
	return len(b), nil
}

func (t *tunnelResponseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return t.conn, bufio.NewReadWriter(bufio.NewReader(t.conn), bufio.NewWriter(t.conn)), nil
}
