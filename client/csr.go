package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/server/pki"
)

// ErrCertificateRefused means a certificate request was denied or failed;
// the error carries the condition's reason and message.
var ErrCertificateRefused = errors.New("certificate request refused")

// usagesOf are the key usages the kubelet asks each signer for.
func usagesOf(signer string) []certificatesv1.KeyUsage {
	if signer == pki.SignerKubeletServing {
		return []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	}
	return []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
}

// requestCertificate creates a CertificateSigningRequest for signer and
// waits until the leader's signer issues it (the API's error, 403 for a
// request no signer would sign; ErrCertificateRefused when denied).
func requestCertificate(ctx context.Context, cs kubernetes.Interface, signer, csrPEM string) ([]byte, error) {
	csr, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "node-csr-"},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Request: []byte(csrPEM), SignerName: signer, Usages: usagesOf(signer)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("certificate request for %s: %w", signer, err)
	}
	wait := 100 * time.Millisecond
	for {
		got, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, csr.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("certificate request %s: %w", csr.Name, err)
		}
		for _, c := range got.Status.Conditions {
			if (c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed) && c.Status == corev1.ConditionTrue {
				return nil, fmt.Errorf("certificate request %s: %w: %s %s: %s", csr.Name, ErrCertificateRefused, c.Type, c.Reason, c.Message)
			}
		}
		if len(got.Status.Certificate) > 0 {
			return got.Status.Certificate, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("certificate request %s not issued: %w", csr.Name, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// requestNodeCredentials makes new keys for the node, gets the client
// certificate with cs (a bootstrap token or the node's current
// certificate), then the serving certificate as the node itself (with the
// new client certificate, or cs again when renewing).
func requestNodeCredentials(ctx context.Context, cs kubernetes.Interface, serverURL string, caPEM []byte, nodeName string, addresses []string, renewing bool) (*pki.NodeCredentials, error) {
	req, clientKey, servingKey, err := pki.NewNodeCSRs(nodeName, addresses)
	if err != nil {
		return nil, err
	}
	clientCert, err := requestCertificate(ctx, cs, pki.SignerKubeletClient, req.ClientCSR)
	if err != nil {
		return nil, err
	}
	nodeCS := cs
	if !renewing {
		nodeCS, err = kubernetes.NewForConfig(&rest.Config{Host: serverURL, Timeout: 30 * time.Second, UserAgent: "skiff-agent",
			TLSClientConfig: rest.TLSClientConfig{CAData: caPEM, CertData: clientCert, KeyData: clientKey}})
		if err != nil {
			return nil, err
		}
	}
	servingCert, err := requestCertificate(ctx, nodeCS, pki.SignerKubeletServing, req.ServingCSR)
	if err != nil {
		return nil, err
	}
	c := &pki.NodeCredentials{CACert: string(caPEM), ClientCert: string(clientCert), ClientKey: string(clientKey),
		ServingCert: string(servingCert), ServingKey: string(servingKey)}
	if err := c.Check(nodeName); err != nil {
		return nil, fmt.Errorf("node credentials from %s: %w", serverURL, err)
	}
	return c, nil
}
