package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/server/auth"
)

// tlsStreamLayer carries Raft traffic over mutual TLS: both ends present a
// certificate signed by the cluster CA with organisation skiff:servers.
type tlsStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	serverTLS *tls.Config
	clientTLS *tls.Config
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

func newTLSStreamLayer(bind string, advertise net.Addr, serverTLS, clientTLS *tls.Config) (*tlsStreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listener: %w", err)
	}
	return &tlsStreamLayer{ln: ln, advertise: advertise, serverTLS: serverTLS, clientTLS: clientTLS}, nil
}

// Accept returns the next connection whose client certificate belongs to a
// master; others are closed.
func (t *tlsStreamLayer) Accept() (net.Conn, error) {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return nil, err
		}
		tc := tls.Server(c, t.serverTLS)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			continue
		}
		_ = tc.SetDeadline(time.Time{})
		if err := checkServerPeer(tc.ConnectionState()); err != nil {
			_ = tc.Close()
			continue
		}
		return tc, nil
	}
}

func (t *tlsStreamLayer) Close() error { return t.ln.Close() }

func (t *tlsStreamLayer) Addr() net.Addr {
	if t.advertise != nil {
		return t.advertise
	}
	return t.ln.Addr()
}

// Dial connects to another master and checks that it is one.
func (t *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, err
	}
	cfg := t.clientTLS.Clone()
	cfg.ServerName = host
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(address), cfg)
	if err != nil {
		return nil, err
	}
	if err := checkServerPeer(c.ConnectionState()); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// checkServerPeer accepts only certificates issued to masters.
func checkServerPeer(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return errors.New("raft peer presented no verified certificate")
	}
	for _, o := range cs.PeerCertificates[0].Subject.Organization {
		if o == auth.GroupSkiffServers {
			return nil
		}
	}
	return fmt.Errorf("raft peer %q is not a master", cs.PeerCertificates[0].Subject.CommonName)
}
