package ingress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sort"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
)

// selfSigned makes the default certificate, served for hosts without a
// usable Secret (as ingress-nginx's "Kubernetes Ingress Controller Fake
// Certificate").
func selfSigned() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"Skiff"}, CommonName: DefaultCertificateCN},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"ingress.local"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// DefaultCertificateCN is the common name of the default certificate.
const DefaultCertificateCN = "Skiff Ingress Default Certificate"

func cutLabel(host string) (string, string, bool) { return strings.Cut(host, ".") }

func sortOlder(ings []*networkingv1.Ingress) {
	sort.SliceStable(ings, func(i, j int) bool { return older(ings[i], ings[j]) })
}
