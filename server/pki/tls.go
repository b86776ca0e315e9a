package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// ServerTLSConfig is the API server's TLS configuration: TLS 1.2+, HTTP/2
// and HTTP/1.1, and client certificates signed by ca verified when given
// (requests without one go on to bearer-token or anonymous authentication).
func ServerTLSConfig(ca *x509.CertPool, certPEM, keyPEM []byte) (*tls.Config, error) {
	if ca == nil {
		return nil, errors.New("server TLS config: nil CA pool")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("server TLS config: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca,
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
}

// MutualTLSConfig is the listening side of master-to-master mutual TLS
// (Raft). The peer must present a certificate signed by ca that is a master
// certificate (O=skiff:servers): client certificates of users and nodes,
// though signed by the same CA, are refused.
func MutualTLSConfig(ca *x509.CertPool, certPEM, keyPEM []byte) (*tls.Config, error) {
	if ca == nil {
		return nil, errors.New("mutual TLS config: nil CA pool")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("mutual TLS config: %w", err)
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        ca,
		VerifyConnection: RequireServerPeer,
	}, nil
}

// ClientTLSConfig is the dialling side of master-to-master TLS (Raft,
// forwarding, internal calls): it verifies the server against ca (and
// serverName, when not empty; tls.Dial otherwise takes the host of the
// address), requires it to be a master (RequireServerPeer), and presents
// certPEM/keyPEM as client certificate. Both may be empty for a client
// without a certificate.
func ClientTLSConfig(ca *x509.CertPool, certPEM, keyPEM []byte, serverName string) (*tls.Config, error) {
	if ca == nil {
		return nil, errors.New("client TLS config: nil CA pool")
	}
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		RootCAs:          ca,
		ServerName:       serverName,
		VerifyConnection: RequireServerPeer,
	}
	if len(certPEM) > 0 || len(keyPEM) > 0 {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("client TLS config: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// RequireServerPeer accepts only peers holding a master certificate
// (O=skiff:servers), as a tls.Config's VerifyConnection: it runs after the
// chain was verified against the CA. Nodes' certificates, serving ones
// included, are signed by the same CA and are refused.
func RequireServerPeer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("peer presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	if !slices.Contains(leaf.Subject.Organization, ServerOrganization) {
		return fmt.Errorf("peer %q is not a skiff server (organization %q required)", leaf.Subject.CommonName, ServerOrganization)
	}
	return nil
}
