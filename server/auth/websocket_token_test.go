package auth

import (
	"encoding/base64"
	"net/http"
	"testing"
)

func webSocketRequest(t *testing.T, protocols ...string) *http.Request {
	t.Helper()
	r := newRequest(t, "")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	for _, p := range protocols {
		r.Header.Add("Sec-WebSocket-Protocol", p)
	}
	return r
}

func bearerProtocol(token string) string {
	return WebSocketBearerProtocolPrefix + base64.RawURLEncoding.EncodeToString([]byte(token))
}

func TestWebSocketBearerProtocol(t *testing.T) {
	a := NewAuthenticator(AuthenticatorConfig{JoinSecret: "s3cret"})

	t.Run("valid token, protocol removed", func(t *testing.T) {
		r := webSocketRequest(t, "v5.channel.k8s.io, "+bearerProtocol("s3cret")+", v4.channel.k8s.io")
		u, err := a.Authenticate(r)
		assertUser(t, u, err, "skiff:joiner", "system:bootstrappers", "system:authenticated")
		if got, want := r.Header.Get("Sec-WebSocket-Protocol"), "v5.channel.k8s.io, v4.channel.k8s.io"; got != want {
			t.Fatalf("Sec-WebSocket-Protocol after authentication = %q, want %q", got, want)
		}
	})
	t.Run("protocols in separate header lines", func(t *testing.T) {
		r := webSocketRequest(t, bearerProtocol("s3cret"), "v5.channel.k8s.io")
		u, err := a.Authenticate(r)
		assertUser(t, u, err, "skiff:joiner", "system:bootstrappers", "system:authenticated")
		if vs := r.Header.Values("Sec-WebSocket-Protocol"); len(vs) != 1 || vs[0] != "v5.channel.k8s.io" {
			t.Fatalf("Sec-WebSocket-Protocol after authentication = %q", vs)
		}
	})
	t.Run("Authorization header wins", func(t *testing.T) {
		r := webSocketRequest(t, "v5.channel.k8s.io, "+bearerProtocol("wrong"))
		r.Header.Set("Authorization", "Bearer s3cret")
		u, err := a.Authenticate(r)
		assertUser(t, u, err, "skiff:joiner", "system:bootstrappers", "system:authenticated")
	})
	t.Run("not a websocket upgrade", func(t *testing.T) {
		r := newRequest(t, "")
		r.Header.Set("Sec-WebSocket-Protocol", "v5.channel.k8s.io, "+bearerProtocol("s3cret"))
		u, err := a.Authenticate(r)
		assertUser(t, u, err, "system:anonymous", "system:unauthenticated")
	})
	t.Run("no token protocol", func(t *testing.T) {
		u, err := a.Authenticate(webSocketRequest(t, "v5.channel.k8s.io"))
		assertUser(t, u, err, "system:anonymous", "system:unauthenticated")
	})
	for name, protocols := range map[string]string{
		"wrong token":             "v5.channel.k8s.io, " + bearerProtocol("wrong"),
		"two tokens":              "v5.channel.k8s.io, " + bearerProtocol("s3cret") + ", " + bearerProtocol("s3cret"),
		"no other protocol":       bearerProtocol("s3cret"),
		"empty token":             "v5.channel.k8s.io, " + WebSocketBearerProtocolPrefix,
		"padded or not base64url": "v5.channel.k8s.io, " + WebSocketBearerProtocolPrefix + "czNjcmV0==",
	} {
		t.Run(name, func(t *testing.T) {
			r := webSocketRequest(t, protocols)
			u, err := a.Authenticate(r)
			assertUnauthenticated(t, u, err)
		})
	}
}
