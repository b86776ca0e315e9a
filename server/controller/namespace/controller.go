// Package namespace is the namespace lifecycle controller: a namespace
// being deleted (Terminating, held by the "kubernetes" finalizer in
// spec.finalizers) is emptied — its pods first, then, once they are gone,
// every other namespaced resource the API serves, found through
// discovery — and then finalized through namespaces/finalize, upon which
// the API server deletes it.
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

// podsGVR is what an ordered namespace deletion removes first.
var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

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
	var st deletionStatus
	// Discovery from before the deletion may lack a resource (a CRD's)
	// made since; the timestamp has whole seconds.
	gvrs, err := c.resources(ctx, ns.DeletionTimestamp.Add(time.Second))
	if err != nil {
		st.discoveryErr = err.Error()
		c.setConditions(ctx, ns, &st)
		return err
	}
	// Ordered deletion (Kubernetes 1.33+, OrderedNamespaceDeletion): the
	// pods first, and nothing else while one remains, so no pod outlives
	// what it uses (its Secrets, ConfigMaps, service account).
	if slices.Contains(gvrs, podsGVR) {
		c.deleteContent(ctx, name, []schema.GroupVersionResource{podsGVR}, &st)
		if st.contentErr != "" || len(st.remaining) > 0 {
			c.setConditions(ctx, ns, &st)
			c.queue.AddAfter(name, 2*time.Second)
			return nil
		}
		gvrs = slices.DeleteFunc(slices.Clone(gvrs), func(g schema.GroupVersionResource) bool { return g == podsGVR })
	}
	c.deleteContent(ctx, name, gvrs, &st)
	c.setConditions(ctx, ns, &st)
	if st.contentErr != "" || len(st.remaining) > 0 {
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

// deletionStatus is what one pass over a namespace found, for its
// conditions.
type deletionStatus struct {
	discoveryErr string
	contentErr   string
	// remaining: "pods. has 1 resource instances"…; finalizers: the
	// finalizers holding them, with counts.
	remaining  []string
	finalizers map[string]int
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

// deleteContent deletes everything of gvrs in the namespace and records
// in st what is still there (objects waiting for their grace period or
// finalizers) and what failed; a failure on one resource does not stop
// the others, as kube-apiserver's namespace controller.
func (c *Controller) deleteContent(ctx context.Context, ns string, gvrs []schema.GroupVersionResource, st *deletionStatus) {
	policy := metav1.DeletePropagationBackground
	var errs []string
	for _, gvr := range gvrs {
		res := c.cc.Metadata.Resource(gvr).Namespace(ns)
		list, err := res.List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("list %s: %v", gvr.Resource, err))
			continue
		}
		if len(list.Items) == 0 {
			continue
		}
		for _, it := range list.Items {
			if it.DeletionTimestamp == nil {
				err := res.Delete(ctx, it.Name, metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &it.UID}})
				if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
					errs = append(errs, fmt.Sprintf("delete %s %s: %v", gvr.Resource, it.Name, err))
				}
			}
			for _, f := range it.Finalizers {
				if st.finalizers == nil {
					st.finalizers = map[string]int{}
				}
				st.finalizers[f]++
			}
		}
		st.remaining = append(st.remaining, fmt.Sprintf("%s.%s has %d resource instances", gvr.Resource, gvr.Group, len(list.Items)))
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		st.contentErr = fmt.Sprintf("Failed to delete all resource types, %d remaining: %s", len(errs), strings.Join(errs, ", "))
	}
}

// setConditions records why the namespace is not gone yet (best effort),
// as kube-apiserver's namespace controller: each of its five condition
// types, True with what failed or remains, else False with its "ok"
// reason.
func (c *Controller) setConditions(ctx context.Context, ns *corev1.Namespace, st *deletionStatus) {
	cp := ns.DeepCopy()
	now := controller.Now(c.cc.Now)
	set := func(t corev1.NamespaceConditionType, bad bool, badReason, badMsg, okReason, okMsg string) {
		status, reason, msg := corev1.ConditionFalse, okReason, okMsg
		if bad {
			status, reason, msg = corev1.ConditionTrue, badReason, badMsg
		}
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
	var held []string
	for f, n := range st.finalizers {
		held = append(held, fmt.Sprintf("%s in %d resource instances", f, n))
	}
	sort.Strings(held)
	sort.Strings(st.remaining)
	set(corev1.NamespaceDeletionDiscoveryFailure, st.discoveryErr != "", "DiscoveryFailed", st.discoveryErr,
		"ResourcesDiscovered", "All resources successfully discovered")
	set(corev1.NamespaceDeletionGVParsingFailure, false, "", "", "ParsedGroupVersions", "All legacy kube types successfully parsed")
	set(corev1.NamespaceDeletionContentFailure, st.contentErr != "", "ContentDeletionFailed", st.contentErr,
		"ContentDeleted", "All content successfully deleted, may be waiting on finalization")
	set(corev1.NamespaceContentRemaining, len(st.remaining) > 0, "SomeResourcesRemain", "Some resources are remaining: "+strings.Join(st.remaining, ", "),
		"ContentRemoved", "All content successfully removed")
	set(corev1.NamespaceFinalizersRemaining, len(held) > 0, "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: "+strings.Join(held, ", "),
		"ContentHasNoFinalizers", "All content-preserving finalizers finished")
	if fmt.Sprint(cp.Status.Conditions) == fmt.Sprint(ns.Status.Conditions) {
		return
	}
	if _, err := c.cc.Client.CoreV1().Namespaces().UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		c.log.Debug("namespace conditions", "namespace", ns.Name, "err", err)
	}
}
