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

	"k8s.io/client-go/rest"

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

// BootstrapNode gets a node's credentials from a master with the join
// token: it checks the master's CA against the token's hash before it
// sends the secret, as masters joining do.
func BootstrapNode(ctx context.Context, serverURL, token string, req pki.NodeBootstrapRequest) (*pki.NodeCredentials, error) {
	caHash, secret, err := pki.ParseToken(token)
	if err != nil {
		return nil, fmt.Errorf("join token: %w", err)
	}
	if caHash == "" {
		return nil, errors.New("join token has no CA hash: use the full token from a master's <data-dir>/token (K10...)")
	}
	caPEM, err := pki.FetchVerifiedCA(ctx, serverURL, caHash)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("node bootstrap: the server's CA certificate does not parse")
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(serverURL, "/")+"/internal/v1/node-bootstrap", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Authorization", "Bearer "+secret)
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("node bootstrap at %s: %w", serverURL, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("node bootstrap at %s: %s: %s", serverURL, resp.Status, bytes.TrimSpace(out))
	}
	var creds pki.NodeCredentials
	if err := json.Unmarshal(out, &creds); err != nil {
		return nil, fmt.Errorf("node bootstrap at %s: %w", serverURL, err)
	}
	if pki.CAHash([]byte(creds.CACert)) != caHash {
		return nil, errors.New("node bootstrap: the CA sent does not match the token")
	}
	return &creds, nil
}

// SaveNodeCredentials writes creds under dir (keys mode 0600).
func SaveNodeCredentials(dir string, c *pki.NodeCredentials) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data string
		mode os.FileMode
	}{
		{nodeCAFile, c.CACert, 0o644}, {nodeClientCertFile, c.ClientCert, 0o644}, {nodeClientKeyFile, c.ClientKey, 0o600},
		{nodeServingCertFile, c.ServingCert, 0o644}, {nodeServingKeyFile, c.ServingKey, 0o600},
	} {
		if err := pki.WriteFileAtomic(filepath.Join(dir, f.name), []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	return nil
}

// LoadNodeCredentials reads the credentials saved under dir and checks
// they are still good for nodeName and addresses: the client certificate
// names the node, and neither certificate expires within 30 days nor lacks
// one of the addresses.
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
	client, err := parseCertPEM(c.ClientCert)
	if err != nil {
		return nil, err
	}
	serving, err := parseCertPEM(c.ServingCert)
	if err != nil {
		return nil, err
	}
	if client.Subject.CommonName != pki.NodeUserPrefix+nodeName {
		return nil, fmt.Errorf("saved credentials are for %q", client.Subject.CommonName)
	}
	soon := time.Now().Add(30 * 24 * time.Hour)
	if client.NotAfter.Before(soon) || serving.NotAfter.Before(soon) {
		return nil, errors.New("saved credentials expire soon")
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

// NodeRESTConfig is a client-go config with a node's credentials.
func NodeRESTConfig(serverURL string, c *pki.NodeCredentials) *rest.Config {
	return &rest.Config{
		Host: serverURL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: []byte(c.CACert), CertData: []byte(c.ClientCert), KeyData: []byte(c.ClientKey),
		},
		QPS: 200, Burst: 400,
		UserAgent: "skiff-agent",
	}
}

// KubeletServingTLS is the kubelet server's TLS config: its serving
// certificate, client certificates of the cluster CA verified when given,
// HTTP/1.1 only (SPDY and WebSocket upgrades).
func KubeletServingTLS(c *pki.NodeCredentials) (*tls.Config, error) {
	cert, err := tls.X509KeyPair([]byte(c.ServingCert), []byte(c.ServingKey))
	if err != nil {
		return nil, fmt.Errorf("kubelet serving certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.CACert)) {
		return nil, errors.New("kubelet: cluster CA does not parse")
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
		NextProtos:   []string{"http/1.1"},
	}, nil
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
