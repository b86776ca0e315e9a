package serviceaccount

import (
	"bytes"
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

const tokensComponent = "serviceaccount-token-controller"

// LegacySigner signs the never-expiring tokens kept in Secrets
// (auth.ServiceAccountTokens).
type LegacySigner interface {
	IssueLegacy(namespace, serviceAccount string, uid types.UID, secret string) (string, error)
}

// TokensController fills Secrets of type kubernetes.io/service-account-token
// as Kubernetes' token controller does: for the service account named by
// the kubernetes.io/service-account.name annotation it records the
// account's UID (kubernetes.io/service-account.uid) and sets token, ca.crt
// and namespace. A Secret whose account does not exist, or has another UID
// than recorded, is deleted.
type TokensController struct {
	cc     *controller.Context
	signer LegacySigner
	ca     []byte
	secs   corelisters.SecretLister
	sas    corelisters.ServiceAccountLister
	secInf cache.SharedIndexInformer
	saInf  cache.SharedIndexInformer
	queue  controller.Queue
	log    *slog.Logger
}

// NewTokens returns the token controller; caPEM goes to ca.crt.
func NewTokens(cc *controller.Context, signer LegacySigner, caPEM []byte) *TokensController {
	sec := cc.Informers.Core().V1().Secrets()
	sa := cc.Informers.Core().V1().ServiceAccounts()
	c := &TokensController{cc: cc, signer: signer, ca: caPEM, secs: sec.Lister(), sas: sa.Lister(),
		secInf: sec.Informer(), saInf: sa.Informer(), queue: controller.NewQueue(tokensComponent, 0), log: cc.Log(tokensComponent)}
	onSecret := func(obj any) {
		if s, ok := controller.Unwrap[*corev1.Secret](obj); ok && s.Type == corev1.SecretTypeServiceAccountToken {
			c.queue.Add(s.Namespace + "/" + s.Name)
		}
	}
	controller.AddHandler(c.secInf, cache.ResourceEventHandlerFuncs{AddFunc: onSecret, UpdateFunc: func(_, obj any) { onSecret(obj) }}, c.log)
	// A deleted (or recreated) account takes its token Secrets along.
	onSA := func(obj any) {
		sa, ok := controller.Unwrap[*corev1.ServiceAccount](obj)
		if !ok {
			return
		}
		list, err := c.secs.Secrets(sa.Namespace).List(everything)
		if err != nil {
			return
		}
		for _, s := range list {
			if s.Type == corev1.SecretTypeServiceAccountToken && s.Annotations[corev1.ServiceAccountNameKey] == sa.Name {
				c.queue.Add(s.Namespace + "/" + s.Name)
			}
		}
	}
	controller.AddHandler(c.saInf, cache.ResourceEventHandlerFuncs{AddFunc: onSA, DeleteFunc: onSA}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *TokensController) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.secInf, c.saInf) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *TokensController) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	sec, err := c.secs.Secrets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if sec.Type != corev1.SecretTypeServiceAccountToken || sec.DeletionTimestamp != nil {
		return nil
	}
	saName := sec.Annotations[corev1.ServiceAccountNameKey]
	sa, err := c.sas.ServiceAccounts(ns).Get(saName)
	if apierrors.IsNotFound(err) {
		// The informer may lag behind a just-created account: ask.
		sa, err = c.cc.Client.CoreV1().ServiceAccounts(ns).Get(ctx, saName, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) || (err == nil && sa.DeletionTimestamp != nil) {
		return c.deleteSecret(ctx, sec, "its service account does not exist")
	}
	if err != nil {
		return err
	}
	if uid := sec.Annotations[corev1.ServiceAccountUIDKey]; uid != "" && types.UID(uid) != sa.UID {
		return c.deleteSecret(ctx, sec, "its service account was recreated")
	}
	want := sec.DeepCopy()
	if want.Annotations == nil {
		want.Annotations = map[string]string{}
	}
	want.Annotations[corev1.ServiceAccountUIDKey] = string(sa.UID)
	if want.Data == nil {
		want.Data = map[string][]byte{}
	}
	if len(want.Data[corev1.ServiceAccountTokenKey]) == 0 {
		tok, err := c.signer.IssueLegacy(ns, sa.Name, sa.UID, sec.Name)
		if err != nil {
			return err
		}
		want.Data[corev1.ServiceAccountTokenKey] = []byte(tok)
	}
	want.Data[corev1.ServiceAccountRootCAKey] = c.ca
	want.Data[corev1.ServiceAccountNamespaceKey] = []byte(ns)
	if sec.Annotations[corev1.ServiceAccountUIDKey] == string(sa.UID) &&
		bytes.Equal(sec.Data[corev1.ServiceAccountTokenKey], want.Data[corev1.ServiceAccountTokenKey]) &&
		bytes.Equal(sec.Data[corev1.ServiceAccountRootCAKey], c.ca) &&
		string(sec.Data[corev1.ServiceAccountNamespaceKey]) == ns {
		return nil
	}
	_, err = c.cc.Client.CoreV1().Secrets(ns).Update(ctx, want, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone or changed meanwhile: the informer brings it back
	}
	return err
}

func (c *TokensController) deleteSecret(ctx context.Context, sec *corev1.Secret, why string) error {
	c.log.Info("deleting service-account token secret", "namespace", sec.Namespace, "name", sec.Name, "reason", why)
	err := c.cc.Client.CoreV1().Secrets(sec.Namespace).Delete(ctx, sec.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &sec.UID}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

var everything = labels.Everything()
