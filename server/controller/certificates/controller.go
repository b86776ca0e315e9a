// Package certificates approves and signs the kubelet's
// CertificateSigningRequests, as kube-controller-manager's csrapproving
// and csrsigning controllers do for the kubelet signers
// (kubernetes.io/kube-apiserver-client-kubelet and
// kubernetes.io/kubelet-serving). It runs on the leader, which holds the
// cluster CA.
package certificates

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/controller"
	"github.com/skiff-io/skiff/server/pki"
)

const component = "csr-approving-signing"

// Signer signs node certificate requests (the cluster CA).
type Signer interface {
	SignNodeCSR(signer string, csrPEM []byte, nodeName string, lifetime time.Duration) ([]byte, error)
}

// Config configures the controller.
type Config struct {
	Signer Signer
	// Lifetime of the certificates (pki.DefaultNodeCertLifetime if 0); a
	// shorter spec.expirationSeconds wins.
	Lifetime time.Duration
	// IsMaster reports whether name is a master's node, whose credentials
	// come from its master: a bootstrap token's request for it is denied.
	IsMaster func(name string) bool
	// CheckServingNames refuses the names of a node's serving certificate
	// that are not the node's to hold (a master's address or name, the
	// API's Service names); nil accepts any.
	CheckServingNames func(node string, dns []string, ips []net.IP) error
}

// Controller approves and signs.
type Controller struct {
	cc    *controller.Context
	cfg   Config
	csrs  certlisters.CertificateSigningRequestLister
	inf   cache.SharedIndexInformer
	queue controller.Queue
	log   *slog.Logger
}

// New returns the controller.
func New(cc *controller.Context, cfg Config) *Controller {
	i := cc.Informers.Certificates().V1().CertificateSigningRequests()
	c := &Controller{cc: cc, cfg: cfg, csrs: i.Lister(), inf: i.Informer(), queue: controller.NewQueue(component, 0), log: cc.Log(component)}
	add := func(obj any) {
		if k, ok := controller.KeyOf(obj); ok {
			c.queue.Add(k)
		}
	}
	controller.AddHandler(c.inf, cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, obj any) { add(obj) }}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.inf) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func condition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func (c *Controller) sync(ctx context.Context, name string) error {
	csr, err := c.csrs.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	signer := csr.Spec.SignerName
	if signer != pki.SignerKubeletClient && signer != pki.SignerKubeletServing {
		return nil // not ours
	}
	if len(csr.Status.Certificate) > 0 || condition(csr, certificatesv1.CertificateDenied) || condition(csr, certificatesv1.CertificateFailed) {
		return nil
	}
	csr = csr.DeepCopy()
	node, req, err := pki.CheckNodeCSR(signer, csr.Spec.Request)
	if !condition(csr, certificatesv1.CertificateApproved) {
		approve, reason := c.decide(csr, node, err)
		if approve && signer == pki.SignerKubeletServing && c.cfg.CheckServingNames != nil && req != nil {
			if nerr := c.cfg.CheckServingNames(node, req.DNSNames, req.IPAddresses); nerr != nil {
				approve, reason = false, nerr.Error()
			}
		}
		t := certificatesv1.CertificateDenied
		if approve {
			t = certificatesv1.CertificateApproved
		}
		if !approve && reason == "" {
			return nil // left for an admin
		}
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: t, Status: corev1.ConditionTrue, Reason: "AutoApproved", Message: reason,
			LastUpdateTime: metav1.NewTime(c.cc.Now()), LastTransitionTime: metav1.NewTime(c.cc.Now())})
		if !approve {
			csr.Status.Conditions[len(csr.Status.Conditions)-1].Reason = "AutoDenied"
		}
		c.log.Info("certificate request decided", "csr", csr.Name, "requester", csr.Spec.Username, "node", node, "approved", approve, "reason", reason)
		if !approve {
			return c.updateStatus(ctx, csr)
		}
	}
	if err != nil {
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue, Reason: "SignerValidationFailure", Message: err.Error(),
			LastUpdateTime: metav1.NewTime(c.cc.Now()), LastTransitionTime: metav1.NewTime(c.cc.Now())})
		return c.updateStatus(ctx, csr)
	}
	life := c.cfg.Lifetime
	if s := csr.Spec.ExpirationSeconds; s != nil && (life <= 0 || time.Duration(*s)*time.Second < life) {
		life = time.Duration(*s) * time.Second
	}
	cert, err := c.cfg.Signer.SignNodeCSR(signer, csr.Spec.Request, node, life)
	if err != nil {
		return fmt.Errorf("sign %s: %w", csr.Name, err)
	}
	csr.Status.Certificate = cert
	if err := c.updateStatus(ctx, csr); err != nil {
		return err
	}
	c.log.Info("signed node certificate", "csr", csr.Name, "signer", signer, "node", node, "requester", csr.Spec.Username)
	return nil
}

// decide applies the auto-approval rules (kube-controller-manager's
// nodeclient and selfnodeclient, and the serving requests of a node for
// itself): approve, or deny with a reason, or leave pending (false, "")
// for an admin.
func (c *Controller) decide(csr *certificatesv1.CertificateSigningRequest, node string, invalid error) (bool, string) {
	if invalid != nil {
		return false, invalid.Error()
	}
	s := csr.Spec
	requester := &auth.User{Name: s.Username, Groups: s.Groups}
	switch {
	case s.Username == auth.NodeUserPrefix+node && requester.InGroup(auth.GroupNodes):
		return true, "a node renewing its own certificate"
	case requester.InGroup(auth.GroupBootstrappers) && s.SignerName == pki.SignerKubeletClient &&
		(strings.HasPrefix(s.Username, auth.BootstrapUserPrefix) || s.Username == auth.UserJoiner):
		if c.cfg.IsMaster != nil && c.cfg.IsMaster(node) {
			return false, fmt.Sprintf("%s is a master's node: its credentials come from its master", node)
		}
		return true, "a bootstrap token's node client certificate"
	case slices.Contains(s.Groups, auth.GroupBootstrappers):
		return false, "a bootstrap token may request a node client certificate only"
	}
	return false, ""
}

func (c *Controller) updateStatus(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	_, err := c.cc.Client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone or changed meanwhile: the informer brings it back
	}
	return err
}
