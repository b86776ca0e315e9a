package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiff-io/skiff/server/pki"
)

// Node credential files under <data-dir>/agent.
const (
	nodeCAFile          = "ca.crt"
	nodeClientCertFile  = "client.crt"
	nodeClientKeyFile   = "client.key"
	nodeServingCertFile = "serving.crt"
	nodeServingKeyFile  = "serving.key"
)

// BootstrapNode gets a node's certificates from a master with a token (an
// agent token; the server token still works, see docs/security.md): it
// checks the master's CA against the token's hash before it sends the
// secret, makes the node's keys and sends only certificate requests. A
// refusal is an *apierrors.StatusError (401 for a wrong, deleted or
// expired token, 403 for a request the node signer refuses).
func BootstrapNode(ctx context.Context, serverURL, token, nodeName string, addresses []string) (*pki.NodeCredentials, error) {
	caHash, secret, err := pki.ParseToken(token)
	if err != nil {
		return nil, fmt.Errorf("join token: %w", err)
	}
	if caHash == "" {
		return nil, fmt.Errorf("join token: %w: no CA hash; use the full K10... agent token (skiff token create, or a master's <data-dir>/agent-token)", pki.ErrInvalidToken)
	}
	caPEM, err := pki.FetchVerifiedCA(ctx, serverURL, caHash)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("node bootstrap: the server's CA certificate does not parse")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	creds, err := requestNodeCertificates(ctx, &http.Client{Timeout: 30 * time.Second, Transport: tr}, serverURL, secret, nodeName, addresses)
	if err != nil {
		return nil, err
	}
	if pki.CAHash([]byte(creds.CACert)) != caHash {
		return nil, fmt.Errorf("node bootstrap: %w", pki.ErrCAMismatch)
	}
	return creds, nil
}

// requestNodeCertificates makes new keys for the node and asks the master
// to sign their requests, authenticated by hc's client certificate or, if
// bearer is not empty, by that token.
func requestNodeCertificates(ctx context.Context, hc *http.Client, serverURL, bearer, nodeName string, addresses []string) (*pki.NodeCredentials, error) {
	req, clientKey, servingKey, err := pki.NewNodeCSRs(nodeName, addresses)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(serverURL, "/")+"/internal/v1/node-bootstrap", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if bearer != "" {
		hreq.Header.Set("Authorization", "Bearer "+bearer)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("node bootstrap at %s: %w", serverURL, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("node bootstrap at %s: %w", serverURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("node bootstrap at %s: %w", serverURL, pki.StatusError(resp.StatusCode, out))
	}
	var certs pki.NodeCertificates
	if err := json.Unmarshal(out, &certs); err != nil {
		return nil, fmt.Errorf("node bootstrap at %s: %w", serverURL, err)
	}
	c := &pki.NodeCredentials{CACert: certs.CACert, ClientCert: certs.ClientCert, ClientKey: string(clientKey),
		ServingCert: certs.ServingCert, ServingKey: string(servingKey)}
	if err := c.Check(nodeName); err != nil {
		return nil, fmt.Errorf("node bootstrap at %s: %w", serverURL, err)
	}
	return c, nil
}

// SaveNodeCredentials writes creds under dir (keys mode 0600), each key
// before its certificate.
func SaveNodeCredentials(dir string, c *pki.NodeCredentials) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data string
		mode os.FileMode
	}{
		{nodeCAFile, c.CACert, 0o644}, {nodeClientKeyFile, c.ClientKey, 0o600}, {nodeClientCertFile, c.ClientCert, 0o644},
		{nodeServingKeyFile, c.ServingKey, 0o600}, {nodeServingCertFile, c.ServingCert, 0o644},
	} {
		if err := pki.WriteFileAtomic(filepath.Join(dir, f.name), []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	return nil
}

// LoadNodeCredentials reads the credentials saved under dir and checks
// they are still good for nodeName and addresses: the keys match the
// certificates, the client certificate names the node, neither has
// expired, and the serving certificate holds every address. One that
// expires soon is renewed by NodeCertificates.Run.
func LoadNodeCredentials(dir, nodeName string, addresses []string) (*pki.NodeCredentials, error) {
	read := func(n string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, n))
		return string(b), err
	}
	var c pki.NodeCredentials
	var err error
	for _, f := range []struct {
		name string
		dst  *string
	}{{nodeCAFile, &c.CACert}, {nodeClientCertFile, &c.ClientCert}, {nodeClientKeyFile, &c.ClientKey}, {nodeServingCertFile, &c.ServingCert}, {nodeServingKeyFile, &c.ServingKey}} {
		if *f.dst, err = read(f.name); err != nil {
			return nil, err
		}
	}
	if err := c.Check(nodeName); err != nil {
		return nil, fmt.Errorf("saved credentials: %w", err)
	}
	serving, err := parseCertPEM(c.ServingCert)
	if err != nil {
		return nil, err
	}
	for _, a := range addresses {
		if err := serving.VerifyHostname(a); err != nil {
			return nil, fmt.Errorf("saved serving certificate: %w", err)
		}
	}
	return &c, nil
}

func parseCertPEM(s string) (*x509.Certificate, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// LocalAddressFor returns the local address this host uses to reach
// serverURL's host (a UDP "connect" sends nothing).
func LocalAddressFor(serverURL string) (string, error) {
	host := strings.TrimPrefix(strings.TrimPrefix(serverURL, "https://"), "http://")
	host = strings.TrimRight(host, "/")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	conn, err := net.Dial("udp", net.JoinHostPort(host, "9"))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String(), nil
}
