// Package serviceaccount keeps a "default" ServiceAccount in every active
// namespace (recreated if deleted), as Kubernetes' service account
// controller does.
package serviceaccount

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "serviceaccount-controller"

// DefaultName is the service account every namespace gets.
const DefaultName = "default"

// Controller ensures default service accounts.
type Controller struct {
	cc    *controller.Context
	nss   corelisters.NamespaceLister
	sas   corelisters.ServiceAccountLister
	nsInf cache.SharedIndexInformer
	saInf cache.SharedIndexInformer
	queue controller.Queue
	log   *slog.Logger
}

// New returns the controller.
func New(cc *controller.Context) *Controller {
	ns := cc.Informers.Core().V1().Namespaces()
	sa := cc.Informers.Core().V1().ServiceAccounts()
	c := &Controller{cc: cc, nss: ns.Lister(), sas: sa.Lister(), nsInf: ns.Informer(), saInf: sa.Informer(),
		queue: controller.NewQueue(component, 0), log: cc.Log(component)}
	controller.QueueNamespaces(c.nsInf, c.queue, c.log)
	controller.AddHandler(c.saInf, cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if sa, ok := controller.Unwrap[*corev1.ServiceAccount](obj); ok && sa.Name == DefaultName {
			c.queue.Add(sa.Namespace)
		}
	}}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.nsInf, c.saInf) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) sync(ctx context.Context, name string) error {
	if ns, err := controller.ActiveNamespace(c.nss, name); ns == nil || err != nil {
		return err
	}
	if _, err := c.sas.ServiceAccounts(name).Get(DefaultName); err == nil {
		return nil
	}
	_, err := c.cc.Client.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: DefaultName, Namespace: name},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) || controller.IsNamespaceTerminating(err) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
