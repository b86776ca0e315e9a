// Package rootcacertpublisher keeps the kube-root-ca.crt ConfigMap, which
// holds the cluster CA under ca.crt, in every active namespace (recreated
// if deleted, restored if changed), as Kubernetes' root-ca-cert-publisher
// does. Pods' kube-api-access volumes project it.
package rootcacertpublisher

import (
	"bytes"
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "root-ca-cert-publisher"

// Name and key of the published ConfigMap.
const (
	ConfigMapName = "kube-root-ca.crt"
	Key           = "ca.crt"
	description   = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
)

// Controller publishes the CA.
type Controller struct {
	cc    *controller.Context
	ca    []byte
	nss   corelisters.NamespaceLister
	cms   corelisters.ConfigMapLister
	nsInf cache.SharedIndexInformer
	cmInf cache.SharedIndexInformer
	queue controller.Queue
	log   *slog.Logger
}

// New returns the controller publishing caPEM.
func New(cc *controller.Context, caPEM []byte) *Controller {
	ns := cc.Informers.Core().V1().Namespaces()
	cm := cc.Informers.Core().V1().ConfigMaps()
	c := &Controller{cc: cc, ca: caPEM, nss: ns.Lister(), cms: cm.Lister(), nsInf: ns.Informer(), cmInf: cm.Informer(),
		queue: controller.NewQueue(component, 0), log: cc.Log(component)}
	controller.QueueNamespaces(c.nsInf, c.queue, c.log)
	onCM := func(obj any) {
		if m, ok := controller.Unwrap[*corev1.ConfigMap](obj); ok && m.Name == ConfigMapName {
			c.queue.Add(m.Namespace)
		}
	}
	controller.AddHandler(c.cmInf, cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { onCM(obj) },
		DeleteFunc: onCM,
	}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.nsInf, c.cmInf) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) sync(ctx context.Context, name string) error {
	if ns, err := controller.ActiveNamespace(c.nss, name); ns == nil || err != nil {
		return err
	}
	cm, err := c.cms.ConfigMaps(name).Get(ConfigMapName)
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.cc.Client.CoreV1().ConfigMaps(name).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: name,
				Annotations: map[string]string{"kubernetes.io/description": description}},
			Data: map[string]string{Key: string(c.ca)},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) || controller.IsNamespaceTerminating(err) || apierrors.IsNotFound(err) {
			return nil
		}
		return err
	case err != nil:
		return err
	}
	if bytes.Equal([]byte(cm.Data[Key]), c.ca) && len(cm.Data) == 1 && len(cm.BinaryData) == 0 {
		return nil
	}
	cm = cm.DeepCopy()
	cm.Data = map[string]string{Key: string(c.ca)}
	cm.BinaryData = nil
	_, err = c.cc.Client.CoreV1().ConfigMaps(name).Update(ctx, cm, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		// Gone or changed meanwhile: the informer brings us back.
		return nil
	}
	return err
}
