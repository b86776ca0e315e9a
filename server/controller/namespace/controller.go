// Package namespace is the namespace lifecycle controller: a namespace
// being deleted (Terminating, held by the "kubernetes" finalizer in
// spec.finalizers) is emptied — every namespaced resource the API
// serves, found through discovery, is deleted — and then finalized
// through namespaces/finalize, upon which the API server deletes it.
package namespace

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "namespace-controller"

// discoveryTTL is how long the list of namespaced resources is reused.
const discoveryTTL = time.Minute

// Controller empties and finalizes deleted namespaces.
type Controller struct {
	cc     *controller.Context
	nss    corelisters.NamespaceLister
	inf    cache.SharedIndexInformer
	queue  controller.Queue
	log    *slog.Logger
	mu     sync.Mutex
	gvrs   []schema.GroupVersionResource
	gvrsAt time.Time
}

// New returns the namespace controller.
func New(cc *controller.Context) *Controller {
	inf := cc.Informers.Core().V1().Namespaces()
	c := &Controller{cc: cc, nss: inf.Lister(), inf: inf.Informer(), queue: controller.NewQueue(component, 10*time.Second), log: cc.Log(component)}
	add := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.DeletionTimestamp != nil {
			c.queue.Add(ns.Name)
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

// errContentRemaining asks for another look once objects still being
// deleted (pods terminating, finalizers) are gone.
type errContentRemaining struct{ what string }

func (e *errContentRemaining) Error() string { return "content remaining: " + e.what }

func (c *Controller) sync(ctx context.Context, name string) error {
	ns, err := c.nss.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.DeletionTimestamp == nil || !slices.Contains(ns.Spec.Finalizers, corev1.FinalizerKubernetes) {
		return nil
	}
	// Discovery from before the deletion may lack a resource (a CRD's)
	// made since; the timestamp has whole seconds.
	gvrs, err := c.resources(ctx, ns.DeletionTimestamp.Add(time.Second))
	if err != nil {
		c.setConditions(ctx, ns, "NamespaceDeletionDiscoveryFailure", err.Error(), "", "")
		return err
	}
	remaining, finalizers, err := c.deleteContent(ctx, name, gvrs)
	if err != nil {
		c.setConditions(ctx, ns, "NamespaceDeletionContentFailure", err.Error(), "", "")
		return err
	}
	if remaining != "" {
		c.setConditions(ctx, ns, "", "", remaining, finalizers)
		c.queue.AddAfter(name, 2*time.Second)
		return nil
	}
	cp := ns.DeepCopy()
	cp.Spec.Finalizers = slices.DeleteFunc(cp.Spec.Finalizers, func(f corev1.FinalizerName) bool { return f == corev1.FinalizerKubernetes })
	_, err = c.cc.Client.CoreV1().Namespaces().Finalize(ctx, cp, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		c.log.Info("namespace emptied and finalized", "namespace", name)
	}
	return err
}

// resources lists the namespaced resources that can be listed and
// deleted (discovery, cached for a minute, and fetched again when older
// than notBefore).
func (c *Controller) resources(ctx context.Context, notBefore time.Time) ([]schema.GroupVersionResource, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gvrs != nil && time.Since(c.gvrsAt) < discoveryTTL && c.gvrsAt.After(notBefore) {
		return c.gvrs, nil
	}
	lists, err := c.cc.Client.Discovery().ServerPreferredNamespacedResources()
	if err != nil && len(lists) == 0 {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	lists = discovery.FilteredBy(discovery.SupportsAllVerbs{Verbs: []string{"list", "delete"}}, lists)
	set, err := discovery.GroupVersionResources(lists)
	if err != nil {
		return nil, err
	}
	out := make([]schema.GroupVersionResource, 0, len(set))
	for gvr := range set {
		out = append(out, gvr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	c.gvrs, c.gvrsAt = out, time.Now()
	return out, nil
}

// deleteContent deletes everything in the namespace; it reports what is
// still there (objects waiting for their grace period or finalizers).
func (c *Controller) deleteContent(ctx context.Context, ns string, gvrs []schema.GroupVersionResource) (remaining, finalizers string, err error) {
	var left, held []string
	policy := metav1.DeletePropagationBackground
	for _, gvr := range gvrs {
		res := c.cc.Metadata.Resource(gvr).Namespace(ns)
		list, err := res.List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("list %s: %w", gvr.Resource, err)
		}
		if len(list.Items) == 0 {
			continue
		}
		for _, it := range list.Items {
			if it.DeletionTimestamp == nil {
				err := res.Delete(ctx, it.Name, metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &it.UID}})
				if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
					return "", "", fmt.Errorf("delete %s %s: %w", gvr.Resource, it.Name, err)
				}
			}
			if len(it.Finalizers) > 0 {
				held = append(held, it.Finalizers...)
			}
		}
		left = append(left, fmt.Sprintf("%s.%s has %d resource instances", gvr.Resource, gvr.Group, len(list.Items)))
	}
	slices.Sort(held)
	return strings.Join(left, ", "), strings.Join(slices.Compact(held), ", "), nil
}

// setConditions records why the namespace is not gone yet (best effort).
func (c *Controller) setConditions(ctx context.Context, ns *corev1.Namespace, failType, failMsg, remaining, finalizers string) {
	cp := ns.DeepCopy()
	now := controller.Now(c.cc.Now)
	set := func(t corev1.NamespaceConditionType, status corev1.ConditionStatus, reason, msg string) {
		for i := range cp.Status.Conditions {
			cur := &cp.Status.Conditions[i]
			if cur.Type == t {
				if cur.Status != status {
					cur.LastTransitionTime = now
				}
				cur.Status, cur.Reason, cur.Message = status, reason, msg
				return
			}
		}
		cp.Status.Conditions = append(cp.Status.Conditions, corev1.NamespaceCondition{Type: t, Status: status, Reason: reason, Message: msg, LastTransitionTime: now})
	}
	if failType != "" {
		set(corev1.NamespaceConditionType(failType), corev1.ConditionTrue, "ContentDeletionFailed", failMsg)
	}
	if remaining != "" {
		set(corev1.NamespaceContentRemaining, corev1.ConditionTrue, "SomeResourcesRemain", "Some resources are remaining: "+remaining)
	}
	if finalizers != "" {
		set(corev1.NamespaceFinalizersRemaining, corev1.ConditionTrue, "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: "+finalizers)
	}
	if len(cp.Status.Conditions) == len(ns.Status.Conditions) && fmt.Sprint(cp.Status.Conditions) == fmt.Sprint(ns.Status.Conditions) {
		return
	}
	if _, err := c.cc.Client.CoreV1().Namespaces().UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		c.log.Debug("namespace conditions", "namespace", ns.Name, "err", err)
	}
}
