package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
)

// Fuzz targets for what this package decodes from the network (issue 15):
// join tokens (a joiner's --token, the bearer token the API sees) and the
// node certificate signing requests a bootstrap-token holder sends. `make
// fuzz` runs each for a while; the seeds are in testdata/fuzz.

// formatParsed is the token ParseToken's results stand for.
func formatParsed(caHash, secret string) string {
	switch {
	case caHash == "":
		return secret
	case IsAgentSecret(secret):
		return tokenPrefix + caHash + tokenSeparator + secret
	}
	return tokenPrefix + caHash + tokenSeparator + tokenServerUser + secret
}

// FuzzParseToken: any string is parsed or refused with ErrInvalidToken;
// an accepted token is the token its parts format to (the CA hash in
// lower case, surrounding white space dropped), and parses to them again,
// so that one token can never be read as another.
func FuzzParseToken(f *testing.F) {
	ca := FormatToken([]byte("ca"), "0123456789abcdef")
	for _, s := range []string{
		ca,
		FormatAgentToken([]byte("ca"), "abcdef.0123456789abcdef"),
		"  " + ca + "\n",
		"bare-secret",
		"K10",
		"K10::server:x",
		strings.ToUpper(ca[:67]) + ca[67:],
		ca[:67] + "::server:",
		ca[:67] + "::server:abcdef.0123456789abcdef",
		ca[:67] + "::node:x",
		ca + "::server:y",
		"abc def",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hash, secret, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("ParseToken(%q): untyped error %v", s, err)
			}
			return
		}
		if secret == "" || strings.ContainsFunc(secret, unicode.IsSpace) {
			t.Fatalf("ParseToken(%q): secret %q", s, secret)
		}
		if hash != "" && (len(hash) != caHashHexLen || strings.ToLower(hash) != hash) {
			t.Fatalf("ParseToken(%q): CA hash %q", s, hash)
		}
		tok := formatParsed(hash, secret)
		want := strings.TrimSpace(s)
		if hash != "" {
			want = want[:len(tokenPrefix)] + strings.ToLower(want[len(tokenPrefix):len(tokenPrefix)+caHashHexLen]) + want[len(tokenPrefix)+caHashHexLen:]
		}
		if tok != want {
			t.Fatalf("ParseToken(%q) = %q, %q, which formats to %q", s, hash, secret, tok)
		}
		h2, s2, err := ParseToken(tok)
		if err != nil || h2 != hash || s2 != secret {
			t.Fatalf("ParseToken(%q) = %q, %q, %v; want %q, %q", tok, h2, s2, err, hash, secret)
		}
	})
}

// fuzzSigners are the signers a CertificateSigningRequest may name.
var fuzzSigners = []string{SignerKubeletClient, SignerKubeletServing, "kubernetes.io/kube-apiserver-client", ""}

// FuzzCheckNodeCSR: any CertificateSigningRequest body, for any signer, is
// refused with ErrNodeCSR or is one the kubelet signers may sign; what is
// then signed names that node, in system:nodes only, with the CSR's DNS
// and IP names on a serving certificate and none on a client one, and the
// key usage of the signer only.
func FuzzCheckNodeCSR(f *testing.F) {
	req, _, _, err := NewNodeCSRs("n1", []string{"10.0.0.1", "n1.example"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), []byte(req.ClientCSR))
	f.Add(uint8(1), []byte(req.ServingCSR))
	f.Add(uint8(0), []byte(req.ServingCSR))
	f.Add(uint8(3), []byte("-----BEGIN CERTIFICATE REQUEST-----\nMA==\n-----END CERTIFICATE REQUEST-----\n"))
	ca, err := GenerateCA("skiff-ca-fuzz")
	if err != nil {
		f.Fatal(err)
	}
	pool := ca.Pool()
	f.Fuzz(func(t *testing.T, si uint8, csrPEM []byte) {
		signer := fuzzSigners[int(si)%len(fuzzSigners)]
		node, csr, err := CheckNodeCSR(signer, csrPEM)
		if err != nil {
			if !errors.Is(err, ErrNodeCSR) {
				t.Fatalf("CheckNodeCSR: untyped error %v", err)
			}
			return
		}
		if node == "" || csr.Subject.CommonName != NodeUserPrefix+node || !slices.Equal(csr.Subject.Organization, []string{NodesGroup}) {
			t.Fatalf("accepted subject %q for node %q", csr.Subject, node)
		}
		certPEM, err := ca.SignNodeCSR(signer, csrPEM, node, time.Hour)
		if err != nil {
			t.Fatalf("CheckNodeCSR accepted what SignNodeCSR refuses: %v", err)
		}
		if _, err := ca.SignNodeCSR(signer, csrPEM, node+"x", time.Hour); !errors.Is(err, ErrNodeCSR) {
			t.Fatalf("signed for another node: %v", err)
		}
		cert, err := parseCert(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != NodeUserPrefix+node || !slices.Equal(cert.Subject.Organization, []string{NodesGroup}) ||
			cert.IsCA || len(cert.EmailAddresses)+len(cert.URIs) > 0 {
			t.Fatalf("signed %q (CA %v, emails %q, URIs %v)", cert.Subject, cert.IsCA, cert.EmailAddresses, cert.URIs)
		}
		usage := x509.ExtKeyUsageClientAuth
		sans := len(cert.DNSNames) + len(cert.IPAddresses)
		if signer == SignerKubeletServing {
			usage = x509.ExtKeyUsageServerAuth
			if sans == 0 || !slices.Equal(cert.DNSNames, csr.DNSNames) ||
				!slices.EqualFunc(cert.IPAddresses, csr.IPAddresses, func(a, b net.IP) bool { return a.Equal(b) }) {
				t.Fatalf("serving names %q %v, CSR %q %v", cert.DNSNames, cert.IPAddresses, csr.DNSNames, csr.IPAddresses)
			}
		} else if sans > 0 {
			t.Fatalf("client certificate with names %q %v", cert.DNSNames, cert.IPAddresses)
		}
		if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{usage}) {
			t.Fatalf("%s: key usages %v", signer, cert.ExtKeyUsage)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Fatalf("signed certificate does not verify: %v", err)
		}
	})
}
