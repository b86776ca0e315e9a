package pki

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// maxCABytes bounds the /cacerts body a joiner reads from an unverified server.
const maxCABytes = 1 << 20

var (
	// ErrCAMismatch means the CA served by a server is not the one pinned by
	// the join token: the joiner talks to the wrong cluster or to an attacker.
	ErrCAMismatch = errors.New("the server's CA does not match the token")
	// ErrUntrustedServer means the server presented a certificate that does
	// not chain to the CA it served, for the host name that was dialled.
	ErrUntrustedServer = errors.New("the server's certificate is not signed by the token's CA")
)

// FetchVerifiedCA is the joiner's first step. It fetches serverURL/cacerts
// without verifying TLS — the only unverified request, and it carries no
// secret — and checks that the SHA-256 of the body equals caHash (from the
// join token) in constant time, else it returns an error wrapping
// ErrCAMismatch. It then checks that the certificate the server presented on
// that same connection chains to the fetched CA and is valid for the host of
// serverURL, else ErrUntrustedServer: a man in the middle that serves the
// right CA PEM with its own certificate is refused. An empty caHash (a bare
// secret token) is an error: there is nothing to pin.
func FetchVerifiedCA(ctx context.Context, serverURL, caHash string) (caPEM []byte, err error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("fetch CA: parse server URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("fetch CA: server URL %q must be https://HOST[:PORT]", serverURL)
	}
	want := strings.ToLower(caHash)
	if want == "" {
		return nil, errors.New("fetch CA: the token carries no CA hash, cannot verify the server (use the full K10 token)")
	}
	if _, err := hex.DecodeString(want); err != nil || len(want) != caHashHexLen {
		return nil, fmt.Errorf("fetch CA: CA hash %q is not %d hex digits", caHash, caHashHexLen)
	}

	tr := &http.Transport{
		// Verification is done below, against the CA that the token pins.
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	target := strings.TrimSuffix(serverURL, "/") + "/cacerts"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch CA: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch CA from %s: %w", target, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch CA from %s: unexpected status %s", target, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCABytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch CA from %s: read body: %w", target, err)
	}
	if len(body) > maxCABytes {
		return nil, fmt.Errorf("fetch CA from %s: body larger than %d bytes", target, maxCABytes)
	}

	got := CAHash(body)
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return nil, fmt.Errorf("fetch CA from %s: %w (token pins %s, server has %s)", target, ErrCAMismatch, want, got)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		return nil, fmt.Errorf("fetch CA from %s: body holds no PEM certificate", target)
	}
	if err := verifyPeer(resp.TLS, pool, u.Hostname()); err != nil {
		return nil, fmt.Errorf("fetch CA from %s: %w", target, err)
	}
	return body, nil
}

// verifyPeer checks the server certificate of a finished handshake as a
// verifying TLS client would have.
func verifyPeer(cs *tls.ConnectionState, roots *x509.CertPool, host string) error {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: no certificate presented", ErrUntrustedServer)
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       host,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUntrustedServer, err)
	}
	return nil
}

// StatusError turns a master's error answer into an error a caller can
// test with k8s.io/apimachinery/pkg/api/errors (IsUnauthorized,
// IsForbidden...): the metav1.Status of the body when it holds one, else
// a status made from the HTTP code and the body's text.
func StatusError(code int, body []byte) error {
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err == nil && st.Kind == "Status" && st.Code != 0 {
		return &apierrors.StatusError{ErrStatus: st}
	}
	return apierrors.NewGenericServerResponse(code, "", schema.GroupResource{}, "", strings.TrimSpace(string(body)), 0, false)
}
