package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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

// checkNodePodWrites: a kubelet's delete of, and status patch for, a pod
// that is gone (web) get 404, as from Kubernetes' node authorizer, which
// leaves them to NodeRestriction; another node's kubelet may not delete
// or patch the status of hollow-1's pod job (403).
func checkNodePodWrites(t *testing.T, own, other *kubernetes.Clientset) {
	t.Helper()
	ctx := context.Background()
	patch := []byte(`{"status":{"message":"x"}}`)
	if err := own.CoreV1().Pods("default").Delete(ctx, "web", metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node deleting a pod that is gone: %v, want NotFound", err)
	}
	if _, err := own.CoreV1().Pods("default").Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{}, "status"); !apierrors.IsNotFound(err) {
		t.Errorf("node patching the status of a pod that is gone: %v, want NotFound", err)
	}
	if err := other.CoreV1().Pods("default").Delete(ctx, "job", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node deleting another node's pod: %v, want Forbidden", err)
	}
	if _, err := other.CoreV1().Pods("default").Patch(ctx, "job", types.MergePatchType, patch, metav1.PatchOptions{}, "status"); !apierrors.IsForbidden(err) {
		t.Errorf("node patching another node's pod status: %v, want Forbidden", err)
	}
}
