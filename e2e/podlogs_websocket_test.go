package e2e

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// checkLogsOverWebSocket reads pod web's log through the API server over
// a WebSocket, as the conformance test "Pods should support retrieving
// logs from the container over websockets" does: binary messages with
// the subprotocol binary.k8s.io, base64 text ones with
// base64.binary.k8s.io, and the socket closes at the end of the log.
func checkLogsOverWebSocket(t *testing.T, m *testutil.Master, cs *kubernetes.Clientset, want string) {
	t.Helper()
	cfg := m.RESTConfig()
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u := cs.CoreV1().RESTClient().Get().Resource("pods").Namespace("default").Name("web").SubResource("log").URL()
	u.Scheme = "wss"
	for _, proto := range []string{"binary.k8s.io", "base64.binary.k8s.io"} {
		d := gwebsocket.Dialer{TLSClientConfig: tlsCfg, Subprotocols: []string{proto}, HandshakeTimeout: 10 * time.Second}
		h := http.Header{}
		if cfg.BearerToken != "" {
			h.Set("Authorization", "Bearer "+cfg.BearerToken)
		}
		conn, resp, err := d.Dial(u.String(), h)
		if err != nil {
			code := 0
			if resp != nil {
				code = resp.StatusCode
			}
			t.Errorf("logs over websocket (%s): dial: %v (HTTP %d)", proto, err, code)
			continue
		}
		if got := conn.Subprotocol(); got != proto {
			t.Errorf("logs over websocket: subprotocol %q, want %q", got, proto)
		}
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		var b strings.Builder
		for {
			kind, msg, err := conn.ReadMessage()
			if err != nil {
				var ce *gwebsocket.CloseError
				if !errors.As(err, &ce) {
					t.Errorf("logs over websocket (%s): %v", proto, err)
				}
				break
			}
			if proto == "base64.binary.k8s.io" {
				if kind != gwebsocket.TextMessage {
					t.Errorf("base64 message of type %d", kind)
				}
				dec, err := base64.StdEncoding.DecodeString(string(msg))
				if err != nil {
					t.Errorf("base64 message %q: %v", msg, err)
				}
				msg = dec
			}
			b.Write(msg)
		}
		conn.Close()
		if !strings.Contains(b.String(), want) {
			t.Errorf("logs over websocket (%s) = %q, want %q in it", proto, b.String(), want)
		}
	}
}
