package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestWebSocketBearerTokenProtocol: exec over WebSocket as a browser does
// it, without an Authorization header or a client certificate, the
// service account's token in the subprotocol
// base64url.bearer.authorization.k8s.io.<token> next to
// v5.channel.k8s.io (the dashboard's terminal). The server answers with
// v5.channel.k8s.io and runs the command as the service account; a wrong
// token is 401, and the same request without a token is anonymous (403).
func TestWebSocketBearerTokenProtocol(t *testing.T) {
	ctx := context.Background()
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "wstok", Agent: true, Args: []string{"--runtime", "fake"}})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	waitNodeReady(t, cs, "wstok")
	if _, err := cs.CoreV1().Pods("default").Create(ctx, fakePod("web", "wstok", corev1.RestartPolicyAlways), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodPhase(t, cs, "default", "web", corev1.PodRunning)

	// A service account that may exec into pods of default, and its token.
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "term"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().Roles("default").Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "exec"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"get", "create"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings("default").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "exec"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "exec"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "term", Namespace: "default"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "term", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := tr.Status.Token

	// The CA only: no client certificate, as in a browser.
	cfg := m.RESTConfig()
	tlsCfg, err := rest.TLSConfigFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: cfg.CAData, CAFile: cfg.CAFile}})
	if err != nil {
		t.Fatal(err)
	}
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("web").SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Command: []string{"echo", "hi from the terminal"}, Stdout: true, Stderr: true}, scheme.ParameterCodec).URL()
	u.Scheme = "wss"
	dial := func(protocols ...string) (*gwebsocket.Conn, int, error) {
		d := gwebsocket.Dialer{TLSClientConfig: tlsCfg, Subprotocols: protocols, HandshakeTimeout: 10 * time.Second}
		conn, resp, err := d.Dial(u.String(), http.Header{})
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		return conn, code, err
	}
	bearer := func(tok string) string {
		return "base64url.bearer.authorization.k8s.io." + base64.RawURLEncoding.EncodeToString([]byte(tok))
	}

	if _, code, err := dial("v5.channel.k8s.io", bearer(token+"x")); err == nil || code != http.StatusUnauthorized {
		t.Errorf("exec with a wrong token in the subprotocol: %v (HTTP %d), want 401", err, code)
	}
	if _, code, err := dial("v5.channel.k8s.io"); err == nil || code != http.StatusForbidden {
		t.Errorf("exec without a token: %v (HTTP %d), want 403 (anonymous)", err, code)
	}

	conn, code, err := dial("v5.channel.k8s.io", "v4.channel.k8s.io", bearer(token))
	if err != nil {
		t.Fatalf("exec with the token in the subprotocol: %v (HTTP %d)", err, code)
	}
	defer conn.Close()
	if got := conn.Subprotocol(); got != "v5.channel.k8s.io" {
		t.Errorf("negotiated subprotocol %q, want v5.channel.k8s.io", got)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var stdout strings.Builder
	var status *metav1.Status
	for status == nil {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			var ce *gwebsocket.CloseError
			if errors.As(err, &ce) {
				break
			}
			t.Fatalf("reading exec output: %v (so far %q)", err, stdout.String())
		}
		if len(msg) == 0 {
			continue
		}
		switch msg[0] {
		case 1:
			stdout.Write(msg[1:])
		case 3:
			status = &metav1.Status{}
			if err := json.Unmarshal(msg[1:], status); err != nil {
				t.Fatalf("status channel %q: %v", msg[1:], err)
			}
		}
	}
	if strings.TrimSpace(stdout.String()) != "hi from the terminal" {
		t.Errorf("exec stdout %q, want %q", stdout.String(), "hi from the terminal")
	}
	if status == nil || status.Status != metav1.StatusSuccess {
		t.Errorf("exec status %+v, want Success", status)
	}
}
