package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
	"github.com/skiff-io/skiff/server/registry"
)

// leaderInformers returns the one shared informer factory of the leader's
// scheduler and controllers (the garbage collector included). Its
// informers do not go through the API over loopback HTTPS: each lists and
// watches this master's state in process (apiserver.LocalListerWatcher),
// and receives typed objects decoded once per change and shared with the
// API's own watches. Writes still go through the API (client), with its
// validation, admission and Raft.
//
// Every kind the API serves is registered up front except events (which
// no controller watches), because client-go's factory creates an informer
// the first time a type is asked for; the garbage collector asks for all
// of them. The factory is started by its users and shut down when ctx ends;
// the returned group waits for that.
func (s *Server) leaderInformers(ctx context.Context, cfg *rest.Config, wg *sync.WaitGroup) (informers.SharedInformerFactory, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("informer client: %w", err)
	}
	f := informers.NewSharedInformerFactory(client, 0)
	for _, k := range kindsInformed(s.api.Registry()) {
		lw := s.api.LocalListerWatcher(k, "")
		f.InformerFor(k.New(), func(kubernetes.Interface, time.Duration) cache.SharedIndexInformer {
			return cache.NewSharedIndexInformer(lw, k.New(), 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		})
	}
	// The controllers' indexes, before the scheduler may start the pods
	// informer.
	if err := controller.AddIndexes(f); err != nil {
		return nil, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		f.Shutdown()
	}()
	return f, nil
}

// kindsInformed lists the kinds leaderInformers serves: all stored kinds
// (at their stored version) but events.
func kindsInformed(reg *registry.Registry) []*registry.Kind {
	var out []*registry.Kind
	for _, k := range reg.Kinds() {
		// A kind served converted from another version's objects
		// (autoscaling/v1 HPAs) is informed at its stored version only.
		if k.Resource != "events" && !k.Virtual && k.StoredGVK() == k.GVK {
			out = append(out, k)
		}
	}
	return out
}
