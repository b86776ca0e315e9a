package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/connrotation"

	"github.com/skiff-io/skiff/server/pki"
)

// NodeCertificates holds a node's current credentials and hands them to
// its TLS connections through callbacks, so that renewed certificates take
// effect without a restart (as kubelet's certificate manager does). Run
// renews them at 70-80 % of their life.
type NodeCertificates struct {
	dir     string
	tracker *connrotation.ConnectionTracker

	mu sync.RWMutex
	tr *http.Transport // made by the first RESTConfig
	// dial and serverName, when set (UseDialer), replace the plain dialer
	// and the URL's host name: the failover among masters.
	dial       func(ctx context.Context, network, addr string) (net.Conn, error)
	serverName string
	creds      *pki.NodeCredentials
	client     *tls.Certificate
	serving    *tls.Certificate
	renewAt    time.Time
}

// NewNodeCertificates holds c. When dir is not empty, renewed credentials
// are saved there (SaveNodeCredentials).
func NewNodeCertificates(dir string, c *pki.NodeCredentials) (*NodeCertificates, error) {
	m := &NodeCertificates{dir: dir, tracker: connrotation.NewConnectionTracker()}
	if err := m.set(c); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *NodeCertificates) set(c *pki.NodeCredentials) error {
	client, err := tls.X509KeyPair([]byte(c.ClientCert), []byte(c.ClientKey))
	if err != nil {
		return fmt.Errorf("node client certificate: %w", err)
	}
	serving, err := tls.X509KeyPair([]byte(c.ServingCert), []byte(c.ServingKey))
	if err != nil {
		return fmt.Errorf("node serving certificate: %w", err)
	}
	at := renewTime(client.Leaf)
	if s := renewTime(serving.Leaf); s.Before(at) {
		at = s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.creds, m.client, m.serving, m.renewAt = c, &client, &serving, at
	return nil
}

// renewTime is a random point between 70 and 80 % of cert's life.
func renewTime(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	frac := 0.7 + 0.1*rand.Float64()
	return cert.NotBefore.Add(time.Duration(float64(life) * frac))
}

// Current returns the credentials in use.
func (m *NodeCertificates) Current() *pki.NodeCredentials {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.creds
}

// RenewAt is when Run renews the credentials.
func (m *NodeCertificates) RenewAt() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.renewAt
}

// Update saves (when the holder has a directory) and installs new
// credentials, then closes the API connections made with the old client
// certificate, so that every request from now on presents the new one.
func (m *NodeCertificates) Update(c *pki.NodeCredentials) error {
	if m.dir != "" {
		if err := SaveNodeCredentials(m.dir, c); err != nil {
			return err
		}
	}
	if err := m.set(c); err != nil {
		return err
	}
	// Idle connections first, through their transports (so none is handed
	// out closed), then the ones in use.
	m.mu.RLock()
	tr := m.tr
	m.mu.RUnlock()
	if tr != nil {
		tr.CloseIdleConnections()
	}
	m.tracker.CloseAll()
	return nil
}

// UseDialer makes every connection of the configs RESTConfig returns go
// through dial (client.Failover: a live master, whatever the URL says),
// verified for serverName. Call it before the first RESTConfig.
func (m *NodeCertificates) UseDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error), serverName string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dial, m.serverName = dial, serverName
}

// RESTConfig is a client-go config for serverURL whose connections present
// the current client certificate. Every config shares one transport.
func (m *NodeCertificates) RESTConfig(serverURL string) (*rest.Config, error) {
	tr, err := m.transport()
	if err != nil {
		return nil, err
	}
	return &rest.Config{Host: serverURL, Transport: tr, QPS: 200, Burst: 400, UserAgent: "skiff-agent"}, nil
}

func (m *NodeCertificates) transport() (*http.Transport, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tr != nil {
		return m.tr, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(m.creds.CACert)) {
		return nil, errors.New("node credentials: cluster CA does not parse")
	}
	dial := m.dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	dialer := connrotation.NewDialerWithTracker(dial, m.tracker)
	m.tr = utilnet.SetTransportDefaults(&http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    pool,
			ServerName: m.serverName,
			// Only a master serves the API: a node's certificate,
			// though signed by the same CA, is refused.
			VerifyConnection: pki.RequireServerPeer,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				m.mu.RLock()
				defer m.mu.RUnlock()
				return m.client, nil
			},
		},
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 25,
		IdleConnTimeout:     90 * time.Second,
	})
	return m.tr, nil
}

// DirectTransport is a transport of its own that dials the address each
// request names (not the failover's choice) with the current client
// certificate, verifying every master's serving certificate by the name
// they all carry (MasterServerName): the log shipper's connection to each
// master.
func (m *NodeCertificates) DirectTransport() (*http.Transport, error) {
	m.mu.RLock()
	ca := m.creds.CACert
	m.mu.RUnlock()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(ca)) {
		return nil, errors.New("node credentials: cluster CA does not parse")
	}
	dialer := connrotation.NewDialerWithTracker((&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext, m.tracker)
	return utilnet.SetTransportDefaults(&http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion:       tls.VersionTLS12,
			RootCAs:          pool,
			ServerName:       MasterServerName,
			VerifyConnection: pki.RequireServerPeer,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				m.mu.RLock()
				defer m.mu.RUnlock()
				return m.client, nil
			},
		},
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}), nil
}

// ServingTLS is the kubelet server's TLS config: the current serving
// certificate, client certificates of the cluster CA verified when given,
// HTTP/1.1 only (SPDY and WebSocket upgrades).
func (m *NodeCertificates) ServingTLS() (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(m.Current().CACert)) {
		return nil, errors.New("kubelet: cluster CA does not parse")
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			m.mu.RLock()
			defer m.mu.RUnlock()
			return m.serving, nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  pool,
		NextProtos: []string{"http/1.1"},
	}, nil
}

// Renew asks serverURL for new certificates of nodeName with
// CertificateSigningRequests made as the node (its current client
// certificate; a node may renew only its own), for new keys made here.
func (m *NodeCertificates) Renew(ctx context.Context, serverURL, nodeName string, addresses []string) (*pki.NodeCredentials, error) {
	cfg, err := m.RESTConfig(serverURL)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 30 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return requestNodeCredentials(ctx, cs, serverURL, []byte(m.Current().CACert), nodeName, addresses, true)
}

// Run renews the credentials with renew at RenewAt, retrying with backoff
// on failure, until ctx ends.
func (m *NodeCertificates) Run(ctx context.Context, renew func(context.Context) (*pki.NodeCredentials, error), log *slog.Logger) {
	backoff := time.Second
	for {
		wait := time.Until(m.RenewAt())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		c, err := renew(ctx)
		if err == nil {
			err = m.Update(c)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("node certificate renewal failed, retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		m.mu.RLock()
		notAfter, next := m.client.Leaf.NotAfter, m.renewAt
		m.mu.RUnlock()
		log.Info("node certificates renewed", "notAfter", notAfter, "nextRenewal", next)
	}
}
