package certificates_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/certificates"
	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/pki"
)

func request(t *testing.T, subject pkix.Name, dns ...string) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, DNSNames: dns}, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func node(n string) pkix.Name {
	return pkix.Name{CommonName: "system:node:" + n, Organization: []string{"system:nodes"}}
}

// TestApproveAndSign: the approval rules (bootstrap token: node client
// certificates, not a master's; a node: its own; others: an admin
// approves) and the signing.
func TestApproveAndSign(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	ca, err := pki.GenerateCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	c := certificates.New(e.CC, certificates.Config{Signer: ca, Lifetime: time.Hour, IsMaster: func(n string) bool { return n == "m1" }})
	e.Start(func(ctx context.Context) { c.Run(ctx, 1) })
	csrs := e.Client.CertificatesV1().CertificateSigningRequests()
	bootstrapper := []string{"system:bootstrappers", "system:authenticated"}
	create := func(name, signer, user string, groups []string, req []byte) {
		t.Helper()
		_, err := csrs.Create(e.Ctx, &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: signer, Username: user, Groups: groups,
				Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	wait := func(name string, want certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
		t.Helper()
		var got *certificatesv1.CertificateSigningRequest
		e.WaitFor(10*time.Second, name+" "+string(want), func() error {
			c, err := csrs.Get(e.Ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			got = c
			for _, cond := range c.Status.Conditions {
				if cond.Type == want && cond.Status == corev1.ConditionTrue && (want != certificatesv1.CertificateApproved || len(c.Status.Certificate) > 0) {
					return nil
				}
			}
			return fmt.Errorf("conditions %v, %d certificate bytes", c.Status.Conditions, len(c.Status.Certificate))
		})
		return got
	}
	cert := func(c *certificatesv1.CertificateSigningRequest) *x509.Certificate {
		t.Helper()
		b, _ := pem.Decode(c.Status.Certificate)
		crt, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := crt.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		return crt
	}

	create("join", pki.SignerKubeletClient, "system:bootstrap:abcdef", bootstrapper, request(t, node("n1")))
	if crt := cert(wait("join", certificatesv1.CertificateApproved)); crt.Subject.CommonName != "system:node:n1" ||
		crt.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || crt.NotAfter.Sub(crt.NotBefore) > 2*time.Hour {
		t.Errorf("client certificate %v %v %s", crt.Subject, crt.ExtKeyUsage, crt.NotAfter.Sub(crt.NotBefore))
	}
	create("serving", pki.SignerKubeletServing, "system:node:n1", []string{"system:nodes"}, request(t, node("n1"), "n1"))
	if crt := cert(wait("serving", certificatesv1.CertificateApproved)); crt.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || crt.DNSNames[0] != "n1" {
		t.Errorf("serving certificate %v %v", crt.ExtKeyUsage, crt.DNSNames)
	}
	create("master", pki.SignerKubeletClient, "system:bootstrap:abcdef", bootstrapper, request(t, node("m1")))
	wait("master", certificatesv1.CertificateDenied)
	create("admin", pki.SignerKubeletClient, "system:bootstrap:abcdef", bootstrapper, request(t, pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}}))
	if c := wait("admin", certificatesv1.CertificateDenied); len(c.Status.Certificate) > 0 {
		t.Fatalf("system:masters certificate issued")
	}

	// Someone else's request waits for an admin, then is signed.
	create("manual", pki.SignerKubeletClient, "alice", []string{"system:authenticated"}, request(t, node("n3")))
	c1, err := csrs.Get(e.Ctx, "manual", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c1.Status.Conditions = append(c1.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "AdminApproved"})
	if _, err := csrs.UpdateStatus(e.Ctx, c1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if crt := cert(wait("manual", certificatesv1.CertificateApproved)); crt.Subject.CommonName != "system:node:n3" {
		t.Errorf("manually approved certificate for %s", crt.Subject.CommonName)
	}
}
