// Package resourcequota keeps each ResourceQuota's status: status.hard
// from spec.hard and status.used counted from the namespace's objects.
// Admission (server/admission) charges creates against status.used in the
// same Raft entry; this controller recounts — on changes of pods and
// services, and every minute for the other counted kinds — from live
// reads, writing with the quota's resourceVersion as precondition, so a
// charge made meanwhile is never lost.
package resourcequota

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
	"github.com/skiff-io/skiff/server/quota"
)

const component = "resourcequota-controller"

// resync is how often every quota is recounted.
const resync = time.Minute

// Controller keeps quota usage.
type Controller struct {
	cc     *controller.Context
	quotas corelisters.ResourceQuotaLister
	qInf   cache.SharedIndexInformer
	podInf cache.SharedIndexInformer
	svcInf cache.SharedIndexInformer
	queue  controller.Queue
	mapper *restmapper.DeferredDiscoveryRESTMapper
	log    *slog.Logger
}

// New returns the controller.
func New(cc *controller.Context) *Controller {
	q := cc.Informers.Core().V1().ResourceQuotas()
	c := &Controller{
		cc: cc, quotas: q.Lister(), qInf: q.Informer(),
		podInf: cc.Informers.Core().V1().Pods().Informer(),
		svcInf: cc.Informers.Core().V1().Services().Informer(),
		queue:  controller.NewQueue(component, 10*time.Second),
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cc.Client.Discovery())),
		log:    cc.Log(component),
	}
	controller.AddHandler(c.qInf, controller.Handler(c.queue), c.log)
	inNamespace := func(obj any) {
		m, ok := controller.Unwrap[metav1.Object](obj)
		if !ok {
			return
		}
		qs, err := c.quotas.ResourceQuotas(m.GetNamespace()).List(labels.Everything())
		if err != nil {
			return
		}
		for _, q := range qs {
			c.queue.Add(q.Namespace + "/" + q.Name)
		}
	}
	h := cache.ResourceEventHandlerFuncs{AddFunc: inNamespace, UpdateFunc: func(old, obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			// Only a pod finishing changes its usage.
			if op := old.(*corev1.Pod); op.Status.Phase == p.Status.Phase {
				return
			}
		}
		inNamespace(obj)
	}, DeleteFunc: inNamespace}
	controller.AddHandler(c.podInf, h, c.log)
	controller.AddHandler(c.svcInf, h, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.qInf, c.podInf, c.svcInf) {
		return
	}
	go func() {
		t := time.NewTicker(resync)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				qs, _ := c.quotas.List(labels.Everything())
				for _, q := range qs {
					c.queue.Add(q.Namespace + "/" + q.Name)
				}
			}
		}
	}()
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	if _, err := c.quotas.ResourceQuotas(ns).Get(name); apierrors.IsNotFound(err) {
		return nil
	}
	// Read the quota, then the objects: a charge made after the read
	// changes the quota's resourceVersion and fails the write below.
	q, err := c.cc.Client.CoreV1().ResourceQuotas(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	used, err := c.usage(ctx, q)
	if err != nil {
		return err
	}
	st := corev1.ResourceQuotaStatus{Hard: q.Spec.Hard.DeepCopy(), Used: used}
	if quota.Equal(st.Hard, q.Status.Hard) && quota.Equal(st.Used, q.Status.Used) {
		return nil
	}
	q.Status = st
	_, err = c.cc.Client.CoreV1().ResourceQuotas(ns).UpdateStatus(ctx, q, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// usage counts what the namespace uses of each of q's hard names.
func (c *Controller) usage(ctx context.Context, q *corev1.ResourceQuota) (corev1.ResourceList, error) {
	names := quota.Names(q.Spec.Hard)
	used := corev1.ResourceList{}
	for _, n := range names {
		used[n] = resource.MustParse("0")
	}
	needPods, needSvcs := false, false
	counts := map[schema.GroupResource]bool{}
	for _, n := range names {
		s := string(n)
		switch {
		case strings.HasPrefix(s, "count/"):
			res, group, _ := strings.Cut(strings.TrimPrefix(s, "count/"), ".")
			gr := schema.GroupResource{Group: group, Resource: res}
			switch {
			case gr == schema.GroupResource{Resource: "pods"}:
				needPods = true
			case gr == schema.GroupResource{Resource: "services"}:
				needSvcs = true
			default:
				counts[gr] = true
			}
		case n == corev1.ResourceServices || strings.HasPrefix(s, "services."):
			needSvcs = true
		case n == corev1.ResourceConfigMaps:
			counts[schema.GroupResource{Resource: "configmaps"}] = true
		case n == corev1.ResourceSecrets:
			counts[schema.GroupResource{Resource: "secrets"}] = true
		case n == corev1.ResourceReplicationControllers:
			counts[schema.GroupResource{Resource: "replicationcontrollers"}] = true
		case n == corev1.ResourceQuotas:
			counts[schema.GroupResource{Resource: "resourcequotas"}] = true
		case n == corev1.ResourcePersistentVolumeClaims:
			counts[schema.GroupResource{Resource: "persistentvolumeclaims"}] = true
		default:
			needPods = true // pods, cpu, memory, requests.*, limits.*
		}
	}
	add := func(gr schema.GroupResource, u corev1.ResourceList) {
		used = quota.Add(used, quota.Mask(u, names))
	}
	if needPods {
		pods, err := c.cc.Client.CoreV1().Pods(q.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list pods: %w", err)
		}
		for i := range pods.Items {
			if quota.Matches(q, &pods.Items[i]) {
				add(schema.GroupResource{Resource: "pods"}, quota.Usage(schema.GroupResource{Resource: "pods"}, &pods.Items[i]))
			}
		}
	}
	if needSvcs {
		svcs, err := c.cc.Client.CoreV1().Services(q.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list services: %w", err)
		}
		for i := range svcs.Items {
			if quota.Matches(q, &svcs.Items[i]) {
				add(schema.GroupResource{Resource: "services"}, quota.Usage(schema.GroupResource{Resource: "services"}, &svcs.Items[i]))
			}
		}
	}
	for gr := range counts {
		if len(q.Spec.Scopes) > 0 || q.Spec.ScopeSelector != nil {
			continue // scopes select pods only
		}
		gvr, err := c.mapper.ResourceFor(gr.WithVersion(""))
		if err != nil {
			continue // not served: nothing counts
		}
		list, err := c.cc.Metadata.Resource(gvr).Namespace(q.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("list %s: %w", gr, err)
		}
		n := *resource.NewQuantity(int64(len(list.Items)), resource.DecimalSI)
		add(gr, corev1.ResourceList{quota.CountName(gr): n})
		if legacy, ok := quota.LegacyCountName(gr); ok {
			add(gr, corev1.ResourceList{legacy: n})
		}
	}
	return used, nil
}
