package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
)

const (
	// ServerOrganization is the O (group) of every master certificate. It
	// equals auth.GroupSkiffServers; pki cannot import auth.
	ServerOrganization = "skiff:servers"
	// ServerCommonNamePrefix starts the CN of every master certificate.
	ServerCommonNamePrefix = "skiff-server:"
)

// defaultServerDNSNames are in every master certificate, so that in-cluster
// clients (the kubernetes Service) and local tools verify it.
var defaultServerDNSNames = []string{
	"localhost",
	"kubernetes",
	"kubernetes.default",
	"kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local",
}

var defaultServerIPs = []net.IP{net.IPv4(127, 0, 0, 1)}

// IssueServer issues a master's certificate, valid for one year. It serves
// both as the TLS server certificate and as the client certificate of
// master-to-master mutual TLS (Raft, forwarding). The subject is
// CN=skiff-server:<name>, O=skiff:servers. The SANs are dnsNames and ips
// plus localhost, 127.0.0.1 and the kubernetes Service names; IP literals
// found in dnsNames are moved to the IP SANs.
func (ca *CA) IssueServer(name string, dnsNames []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	if name == "" {
		return nil, nil, errors.New("issue server certificate: empty name")
	}
	dns, ipSANs := serverSANs(dnsNames, ips)
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName:   ServerCommonNamePrefix + name,
			Organization: []string{ServerOrganization},
		},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    dns,
		IPAddresses: ipSANs,
	}
	certPEM, keyPEM, err = ca.sign(tmpl)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate for %q: %w", name, err)
	}
	return certPEM, keyPEM, nil
}

// IssueClient issues a client certificate, valid for one year, following the
// Kubernetes convention: CN is the user name, O the groups.
func (ca *CA) IssueClient(commonName string, groups []string) (certPEM, keyPEM []byte, err error) {
	if commonName == "" {
		return nil, nil, errors.New("issue client certificate: empty common name")
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName:   commonName,
			Organization: append([]string(nil), groups...),
		},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certPEM, keyPEM, err = ca.sign(tmpl)
	if err != nil {
		return nil, nil, fmt.Errorf("issue client certificate for %q: %w", commonName, err)
	}
	return certPEM, keyPEM, nil
}

// serverSANs merges the requested SANs with the defaults, dropping empty
// entries and duplicates while keeping the order.
func serverSANs(dnsNames []string, ips []net.IP) ([]string, []net.IP) {
	var (
		dns     []string
		out     []net.IP
		seenDNS = map[string]bool{}
		seenIP  = map[string]bool{}
	)
	addIP := func(ip net.IP) {
		if ip == nil {
			return
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if k := ip.String(); !seenIP[k] {
			seenIP[k] = true
			out = append(out, ip)
		}
	}
	addDNS := func(n string) {
		if n == "" {
			return
		}
		if ip := net.ParseIP(n); ip != nil {
			addIP(ip)
			return
		}
		if !seenDNS[n] {
			seenDNS[n] = true
			dns = append(dns, n)
		}
	}
	for _, n := range dnsNames {
		addDNS(n)
	}
	for _, n := range defaultServerDNSNames {
		addDNS(n)
	}
	for _, ip := range ips {
		addIP(ip)
	}
	for _, ip := range defaultServerIPs {
		addIP(ip)
	}
	return dns, out
}
