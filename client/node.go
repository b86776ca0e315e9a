package client

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
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

// BootstrapNode gets a node's certificates with a token (an agent token;
// the server token still works, see docs/security.md): it checks the
// master's CA against the token's hash before it sends the secret, makes
// the node's keys, and asks for certificates with
// CertificateSigningRequests: the client certificate as the token's user,
// then the serving certificate as the node. A refusal is an
// *apierrors.StatusError (401 for a wrong, deleted or expired token, 403
// for a request no signer would sign) or wraps ErrCertificateRefused.
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
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: serverURL, BearerToken: secret, Timeout: 30 * time.Second,
		UserAgent: "skiff-agent", TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}})
	if err != nil {
		return nil, err
	}
	return requestNodeCredentials(ctx, cs, serverURL, caPEM, nodeName, addresses, false)
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
