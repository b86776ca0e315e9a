package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
