package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
)

// WebSocketBearerProtocolPrefix starts the WebSocket subprotocol that
// carries a bearer token, as kube-apiserver accepts it: browsers cannot set
// an Authorization header on a WebSocket, so a client offers the protocol
// "base64url.bearer.authorization.k8s.io.<token in unpadded base64url>"
// next to the protocol it means to speak (v5.channel.k8s.io and so on).
const WebSocketBearerProtocolPrefix = "base64url.bearer.authorization.k8s.io."

const secWebSocketProtocol = "Sec-Websocket-Protocol"

var (
	errWebSocketTokens     = errors.New("more than one bearer token subprotocol")
	errWebSocketNoProtocol = errors.New("bearer token subprotocol without another subprotocol")
	errWebSocketEmptyToken = errors.New("empty bearer token subprotocol")
)

// webSocketBearerToken returns the token of a WebSocket upgrade request's
// bearer token subprotocol and the request's other subprotocols; found is
// false for requests that are not WebSocket upgrades or offer no such
// protocol. As in kube-apiserver, at most one token protocol may be offered,
// and at least one other protocol, so that the server has one to answer with.
func webSocketBearerToken(r *http.Request) (token string, others []string, found bool, err error) {
	if !wsstream.IsWebSocketRequest(r) {
		return "", nil, false, nil
	}
	for _, h := range r.Header.Values(secWebSocketProtocol) {
		for p := range strings.SplitSeq(h, ",") {
			p = strings.TrimSpace(p)
			enc, ok := strings.CutPrefix(p, WebSocketBearerProtocolPrefix)
			if !ok {
				if p != "" {
					others = append(others, p)
				}
				continue
			}
			if found {
				return "", nil, true, errWebSocketTokens
			}
			found = true
			dec, derr := base64.RawURLEncoding.DecodeString(enc)
			if derr != nil {
				return "", nil, true, fmt.Errorf("bearer token subprotocol: %w", derr)
			}
			if len(dec) == 0 {
				return "", nil, true, errWebSocketEmptyToken
			}
			token = string(dec)
		}
	}
	if found && len(others) == 0 {
		return "", nil, true, errWebSocketNoProtocol
	}
	return token, others, found, nil
}
