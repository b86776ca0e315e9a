package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
)

// Node identities, as Kubernetes names them.
const (
	// NodeUserPrefix starts the user name (CN) of a node's credentials.
	NodeUserPrefix = "system:node:"
	// NodesGroup is the group (O) of every node.
	NodesGroup = "system:nodes"
)

// NodeBootstrapRequest is what an agent sends to
// POST /internal/v1/node-bootstrap, authenticated with the join token.
type NodeBootstrapRequest struct {
	NodeName string `json:"nodeName"`
	// Addresses are the IPs and DNS names the kubelet server is reached
	// at (its serving certificate's SANs).
	Addresses []string `json:"addresses,omitempty"`
}

// NodeCredentials are a node's certificates: a client certificate for the
// API (CN system:node:<name>, O system:nodes) and a serving certificate
// for the kubelet's HTTPS server, with the cluster CA.
type NodeCredentials struct {
	CACert      string `json:"caCert"`
	ClientCert  string `json:"clientCert"`
	ClientKey   string `json:"clientKey"`
	ServingCert string `json:"servingCert"`
	ServingKey  string `json:"servingKey"`
}

// IssueNodeCredentials issues a node's client and kubelet serving
// certificates. The serving certificate is for server authentication only,
// so it cannot be used as a client certificate.
func (ca *CA) IssueNodeCredentials(nodeName string, addresses []string) (*NodeCredentials, error) {
	if nodeName == "" {
		return nil, errors.New("issue node credentials: empty node name")
	}
	user := NodeUserPrefix + nodeName
	clientCert, clientKey, err := ca.IssueClient(user, []string{NodesGroup})
	if err != nil {
		return nil, err
	}
	var dns []string
	var ips []net.IP
	for _, a := range append([]string{nodeName}, addresses...) {
		if ip := net.ParseIP(a); ip != nil {
			ips = append(ips, ip)
		} else if a != "" {
			dns = append(dns, a)
		}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: []string{NodesGroup}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    dns,
		IPAddresses: ips,
	}
	servingCert, servingKey, err := ca.sign(tmpl)
	if err != nil {
		return nil, fmt.Errorf("issue kubelet serving certificate for %q: %w", nodeName, err)
	}
	return &NodeCredentials{
		CACert: string(ca.CertPEM), ClientCert: string(clientCert), ClientKey: string(clientKey),
		ServingCert: string(servingCert), ServingKey: string(servingKey),
	}, nil
}
