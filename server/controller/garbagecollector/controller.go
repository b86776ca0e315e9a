// Package garbagecollector deletes objects whose owners are gone, as
// Kubernetes' garbage collector does over metadata.ownerReferences: a
// graph of every object of every resource the API serves (from the shared
// informers, or metadata informers for resources no controller watches)
// tells each object's owners and dependents.
//
//   - Background: an owner deleted outright leaves dependents whose owners
//     are all gone; they are deleted.
//   - Foreground: an owner with the foregroundDeletion finalizer (and a
//     deletionTimestamp) has its dependents deleted (in the foreground too
//     when they have dependents of their own), and loses the finalizer
//     once no dependent with blockOwnerDeletion is left.
//   - Orphan: an owner with the orphan finalizer has its reference removed
//     from every dependent, then loses the finalizer.
//
// The API server adds the finalizers from a delete's propagationPolicy.
package garbagecollector

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "garbage-collector-controller"

// ignored resources are not collected (as Kubernetes: events).
var ignored = map[schema.GroupResource]bool{
	{Group: "", Resource: "events"}:              true,
	{Group: "events.k8s.io", Resource: "events"}: true,
}

// Controller is the garbage collector.
type Controller struct {
	cc       *controller.Context
	graph    *graph
	attempt  controller.Queue
	orphan   controller.Queue
	mapper   *restmapper.DeferredDiscoveryRESTMapper
	log      *slog.Logger
	meta     metadatainformer.SharedInformerFactory
	mu       sync.Mutex
	watching map[schema.GroupVersionResource]cache.SharedIndexInformer
}

// New returns the garbage collector.
func New(cc *controller.Context) *Controller {
	return &Controller{
		cc:       cc,
		graph:    newGraph(),
		attempt:  controller.NewQueue(component+"-attempt-to-delete", 30*time.Second),
		orphan:   controller.NewQueue(component+"-attempt-to-orphan", 30*time.Second),
		mapper:   restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cc.Client.Discovery())),
		log:      cc.Log(component),
		meta:     metadatainformer.NewSharedInformerFactory(cc.Metadata, 0),
		watching: map[schema.GroupVersionResource]cache.SharedIndexInformer{},
	}
}

// Run discovers the resources, watches them, and runs workers once the
// graph is complete, until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	defer c.meta.Shutdown()
	var infs []cache.SharedIndexInformer
	for {
		var err error
		if infs, err = c.watchAll(ctx); err == nil {
			break
		}
		c.log.Warn("discovery for the garbage collector", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	c.cc.Informers.Start(ctx.Done())
	c.meta.Start(ctx.Done())
	if !controller.WaitForSync(ctx, infs...) {
		return
	}
	c.log.Info("garbage collector graph synced", "resources", len(infs))
	go c.rediscover(ctx)
	go controller.RunWorkers(ctx, c.orphan, 1, c.log, c.syncOrphan)
	controller.RunWorkers(ctx, c.attempt, workers, c.log, c.syncAttempt)
}

// rediscover picks up resources served later (every 30 s).
func (c *Controller) rediscover(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.mapper.Reset()
			if _, err := c.watchAll(ctx); err == nil {
				c.cc.Informers.Start(ctx.Done())
				c.meta.Start(ctx.Done())
			}
		}
	}
}

// watchAll makes sure every deletable, watchable resource has an
// informer feeding the graph, and returns them.
func (c *Controller) watchAll(ctx context.Context) ([]cache.SharedIndexInformer, error) {
	lists, err := c.cc.Client.Discovery().ServerPreferredResources()
	if err != nil && len(lists) == 0 {
		return nil, err
	}
	lists = discovery.FilteredBy(discovery.SupportsAllVerbs{Verbs: []string{"list", "watch", "delete"}}, lists)
	gvrs, err := discovery.GroupVersionResources(lists)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []cache.SharedIndexInformer
	for gvr := range gvrs {
		if ignored[gvr.GroupResource()] {
			continue
		}
		if inf, ok := c.watching[gvr]; ok {
			out = append(out, inf)
			continue
		}
		var inf cache.SharedIndexInformer
		if gi, err := c.cc.Informers.ForResource(gvr); err == nil {
			inf = gi.Informer() // shared with the other controllers
		} else {
			inf = c.meta.ForResource(gvr).Informer()
		}
		c.addHandler(gvr, inf)
		c.watching[gvr] = inf
		out = append(out, inf)
	}
	return out, nil
}

func (c *Controller) addHandler(gvr schema.GroupVersionResource, inf cache.SharedIndexInformer) {
	on := func(obj any, deleted bool) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return
		}
		attempt, orphan := c.graph.apply(change{
			gvr: gvr, uid: m.GetUID(), namespace: m.GetNamespace(), name: m.GetName(),
			owners: m.GetOwnerReferences(), deleting: m.GetDeletionTimestamp() != nil,
			finalizers: m.GetFinalizers(), deleted: deleted,
		})
		for _, uid := range attempt {
			c.attempt.Add(string(uid))
		}
		for _, uid := range orphan {
			c.orphan.Add(string(uid))
		}
	}
	controller.AddHandler(inf, cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { on(obj, false) },
		UpdateFunc: func(old, obj any) {
			om, err1 := meta.Accessor(old)
			nm, err2 := meta.Accessor(obj)
			if err1 == nil && err2 == nil && om.GetResourceVersion() == nm.GetResourceVersion() {
				return
			}
			on(obj, false)
		},
		DeleteFunc: func(obj any) { on(obj, true) },
	}, c.log)
}

// resourceFor maps an owner reference's apiVersion and kind to its
// resource and scope.
func (c *Controller) resourceFor(apiVersion, kind string) (schema.GroupVersionResource, bool, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupVersionResource{}, false, err
	}
	m, err := c.mapper.RESTMapping(gv.WithKind(kind).GroupKind(), gv.Version)
	if meta.IsNoMatchError(err) {
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(gv.WithKind(kind).GroupKind(), gv.Version)
	}
	if err != nil {
		return schema.GroupVersionResource{}, false, err
	}
	return m.Resource, m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// uidOf is the UID of a queue key.
func uidOf(key string) types.UID { return types.UID(key) }
