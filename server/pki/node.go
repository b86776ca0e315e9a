package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Node identities, as Kubernetes names them.
const (
	// NodeUserPrefix starts the user name (CN) of a node's credentials.
	NodeUserPrefix = "system:node:"
	// NodesGroup is the group (O) of every node.
	NodesGroup = "system:nodes"
	// DefaultNodeCertLifetime is how long node certificates are valid
	// unless the master is told otherwise.
	DefaultNodeCertLifetime = leafValidity
)

const pemCertificateRequest = "CERTIFICATE REQUEST"

// ErrNodeCSR is wrapped by every SignNodeCSR refusal: the request is not
// one the node signer may sign (another subject, other groups, names it
// may not carry). The API answers 403.
var ErrNodeCSR = errors.New("the node signer refuses this request")

// NodeBootstrapRequest holds a node's certificate signing requests (PEM)
// for its client certificate (CN system:node:<name>, O system:nodes, no
// SANs) and its kubelet serving certificate (same subject, its addresses
// as SANs); the agent sends them as CertificateSigningRequests. The
// private keys stay on the node.
type NodeBootstrapRequest struct {
	NodeName string `json:"nodeName"`
	// Addresses are the IPs and DNS names the kubelet server is reached
	// at (its serving certificate's SANs).
	Addresses  []string `json:"addresses,omitempty"`
	ClientCSR  string   `json:"clientCSR,omitempty"`
	ServingCSR string   `json:"servingCSR,omitempty"`
}

// NodeCertificates are the certificates signed for a NodeBootstrapRequest.
type NodeCertificates struct {
	CACert      string `json:"caCert"`
	ClientCert  string `json:"clientCert"`
	ServingCert string `json:"servingCert"`
}

// NodeCredentials are a node's certificates and keys: a client certificate
// for the API (CN system:node:<name>, O system:nodes) and a serving
// certificate for the kubelet's HTTPS server, with the cluster CA.
type NodeCredentials struct {
	CACert      string `json:"caCert"`
	ClientCert  string `json:"clientCert"`
	ClientKey   string `json:"clientKey"`
	ServingCert string `json:"servingCert"`
	ServingKey  string `json:"servingKey"`
}

// NewNodeCSRs makes fresh keys for a node and the request that asks for
// their certificates; it returns the keys PEM encoded.
func NewNodeCSRs(nodeName string, addresses []string) (req NodeBootstrapRequest, clientKey, servingKey []byte, err error) {
	subject := pkix.Name{CommonName: NodeUserPrefix + nodeName, Organization: []string{NodesGroup}}
	ck, err := newKey()
	if err != nil {
		return req, nil, nil, err
	}
	sk, err := newKey()
	if err != nil {
		return req, nil, nil, err
	}
	cder, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: subject}, ck)
	if err != nil {
		return req, nil, nil, fmt.Errorf("client CSR: %w", err)
	}
	dns, ips := splitNames(append([]string{nodeName}, addresses...))
	sder, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: subject, DNSNames: dns, IPAddresses: ips}, sk)
	if err != nil {
		return req, nil, nil, fmt.Errorf("serving CSR: %w", err)
	}
	if clientKey, err = encodeKey(ck); err != nil {
		return req, nil, nil, err
	}
	if servingKey, err = encodeKey(sk); err != nil {
		return req, nil, nil, err
	}
	req = NodeBootstrapRequest{
		NodeName: nodeName, Addresses: addresses,
		ClientCSR:  string(pem.EncodeToMemory(&pem.Block{Type: pemCertificateRequest, Bytes: cder})),
		ServingCSR: string(pem.EncodeToMemory(&pem.Block{Type: pemCertificateRequest, Bytes: sder})),
	}
	return req, clientKey, servingKey, nil
}

// Kubernetes' kubelet signers.
const (
	SignerKubeletClient  = "kubernetes.io/kube-apiserver-client-kubelet"
	SignerKubeletServing = "kubernetes.io/kubelet-serving"
)

// SignNodeCSRs signs the two requests of req for req.NodeName, each valid
// for lifetime (SignNodeCSR).
func (ca *CA) SignNodeCSRs(req NodeBootstrapRequest, lifetime time.Duration) (*NodeCertificates, error) {
	clientPEM, err := ca.SignNodeCSR(SignerKubeletClient, []byte(req.ClientCSR), req.NodeName, lifetime)
	if err != nil {
		return nil, fmt.Errorf("client CSR: %w", err)
	}
	servingPEM, err := ca.SignNodeCSR(SignerKubeletServing, []byte(req.ServingCSR), req.NodeName, lifetime)
	if err != nil {
		return nil, fmt.Errorf("serving CSR: %w", err)
	}
	return &NodeCertificates{CACert: string(ca.CertPEM), ClientCert: string(clientPEM), ServingCert: string(servingPEM)}, nil
}

// CheckNodeCSR checks a request for signer as Kubernetes' kubelet signers
// do and returns the node it names: subject exactly
// CN=system:node:<name>, O=system:nodes; for
// kubernetes.io/kube-apiserver-client-kubelet no SANs, for
// kubernetes.io/kubelet-serving DNS and IP SANs only (at least one).
// Anything else gives an error wrapping ErrNodeCSR.
func CheckNodeCSR(signer string, csrPEM []byte) (node string, csr *x509.CertificateRequest, err error) {
	csr, err = parseCSR(csrPEM)
	if err != nil {
		return "", nil, err
	}
	node, ok := strings.CutPrefix(csr.Subject.CommonName, NodeUserPrefix)
	if !ok || node == "" {
		return "", nil, fmt.Errorf("%w: subject %q is not %s<node>", ErrNodeCSR, csr.Subject.CommonName, NodeUserPrefix)
	}
	if _, err := checkNodeSubject(csr, node); err != nil {
		return "", nil, err
	}
	sans := len(csr.DNSNames) + len(csr.IPAddresses)
	other := len(csr.EmailAddresses) + len(csr.URIs)
	switch signer {
	case SignerKubeletClient:
		if sans+other > 0 {
			return "", nil, fmt.Errorf("%w: a node client certificate carries no subject alternative names", ErrNodeCSR)
		}
	case SignerKubeletServing:
		if other > 0 {
			return "", nil, fmt.Errorf("%w: a kubelet serving certificate carries DNS names and IP addresses only", ErrNodeCSR)
		}
		if sans == 0 {
			return "", nil, fmt.Errorf("%w: no DNS name or IP address", ErrNodeCSR)
		}
	default:
		return "", nil, fmt.Errorf("%w: signer %q is not a kubelet signer", ErrNodeCSR, signer)
	}
	return node, csr, nil
}

// SignNodeCSR signs a request of nodeName for signer (CheckNodeCSR), valid
// for lifetime (DefaultNodeCertLifetime if 0), with the key usages of the
// signer only: client auth, or server auth (a serving certificate is never
// a client credential).
func (ca *CA) SignNodeCSR(signer string, csrPEM []byte, nodeName string, lifetime time.Duration) ([]byte, error) {
	node, csr, err := CheckNodeCSR(signer, csrPEM)
	if err != nil {
		return nil, err
	}
	if node != nodeName {
		return nil, fmt.Errorf("%w: subject %q is not %q", ErrNodeCSR, csr.Subject.CommonName, NodeUserPrefix+nodeName)
	}
	if lifetime <= 0 {
		lifetime = DefaultNodeCertLifetime
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: NodeUserPrefix + node, Organization: []string{NodesGroup}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if signer == SignerKubeletServing {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames, tmpl.IPAddresses = csr.DNSNames, csr.IPAddresses
	}
	certPEM, err := ca.signPublic(tmpl, csr.PublicKey, lifetime)
	if err != nil {
		return nil, fmt.Errorf("sign certificate of node %q: %w", node, err)
	}
	return certPEM, nil
}

// parseCSR decodes a PEM CSR and checks its signature.
func parseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != pemCertificateRequest {
		return nil, fmt.Errorf("%w: no PEM %s", ErrNodeCSR, pemCertificateRequest)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNodeCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNodeCSR, err)
	}
	return csr, nil
}

// checkNodeSubject checks that the subject is exactly
// CN=system:node:<nodeName>, O=system:nodes.
func checkNodeSubject(csr *x509.CertificateRequest, nodeName string) (*x509.CertificateRequest, error) {
	s := csr.Subject
	if s.CommonName != NodeUserPrefix+nodeName {
		return nil, fmt.Errorf("%w: subject %q is not %q", ErrNodeCSR, s.CommonName, NodeUserPrefix+nodeName)
	}
	if !slices.Equal(s.Organization, []string{NodesGroup}) {
		return nil, fmt.Errorf("%w: organization %q, only [%s] is signed", ErrNodeCSR, s.Organization, NodesGroup)
	}
	if len(s.OrganizationalUnit)+len(s.Country)+len(s.Province)+len(s.Locality)+len(s.StreetAddress)+len(s.PostalCode) > 0 || s.SerialNumber != "" {
		return nil, fmt.Errorf("%w: subject carries more than CN and O", ErrNodeCSR)
	}
	return csr, nil
}

// IssueNodeCredentials makes keys and certificates of a node in one step,
// for a master's own embedded agent (the keys never leave the process).
func (ca *CA) IssueNodeCredentials(nodeName string, addresses []string, lifetime time.Duration) (*NodeCredentials, error) {
	req, ck, sk, err := NewNodeCSRs(nodeName, addresses)
	if err != nil {
		return nil, fmt.Errorf("issue node credentials: %w", err)
	}
	certs, err := ca.SignNodeCSRs(req, lifetime)
	if err != nil {
		return nil, fmt.Errorf("issue node credentials: %w", err)
	}
	return &NodeCredentials{CACert: certs.CACert, ClientCert: certs.ClientCert, ClientKey: string(ck),
		ServingCert: certs.ServingCert, ServingKey: string(sk)}, nil
}

func splitNames(names []string) (dns []string, ips []net.IP) {
	for _, a := range names {
		if ip := net.ParseIP(a); ip != nil {
			ips = append(ips, ip)
		} else if a != "" {
			dns = append(dns, a)
		}
	}
	return dns, ips
}

// Check verifies that the keys match the certificates, that the client
// certificate is system:node:<nodeName> and that neither certificate has
// expired.
func (c *NodeCredentials) Check(nodeName string) error {
	now := time.Now()
	for _, p := range []struct{ what, cert, key string }{
		{"client", c.ClientCert, c.ClientKey}, {"serving", c.ServingCert, c.ServingKey},
	} {
		pair, err := tls.X509KeyPair([]byte(p.cert), []byte(p.key))
		if err != nil {
			return fmt.Errorf("node %s certificate: %w", p.what, err)
		}
		leaf := pair.Leaf
		if p.what == "client" && leaf.Subject.CommonName != NodeUserPrefix+nodeName {
			return fmt.Errorf("node client certificate is for %q, not %q", leaf.Subject.CommonName, NodeUserPrefix+nodeName)
		}
		if now.After(leaf.NotAfter) {
			return fmt.Errorf("node %s certificate expired at %s", p.what, leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
