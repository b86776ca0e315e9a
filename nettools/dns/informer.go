package dns

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// InformerSource is a Source over client-go informers of Services and
// EndpointSlices (every namespace). Start the factory after
// NewInformerSource.
type InformerSource struct {
	svcInf, sliceInf cache.SharedIndexInformer
	svcs             corelisters.ServiceLister
	slices           discoverylisters.EndpointSliceLister
}

// NewInformerSource registers the informers it needs with factory, which
// must not filter by namespace, label or field.
func NewInformerSource(factory informers.SharedInformerFactory) *InformerSource {
	return &InformerSource{
		svcInf:   factory.Core().V1().Services().Informer(),
		sliceInf: factory.Discovery().V1().EndpointSlices().Informer(),
		svcs:     factory.Core().V1().Services().Lister(),
		slices:   factory.Discovery().V1().EndpointSlices().Lister(),
	}
}

// List implements Source.
func (s *InformerSource) List() ([]*corev1.Service, []*discoveryv1.EndpointSlice, error) {
	svcs, err := s.svcs.List(labels.Everything())
	if err != nil {
		return nil, nil, fmt.Errorf("list services: %w", err)
	}
	slices, err := s.slices.List(labels.Everything())
	if err != nil {
		return nil, nil, fmt.Errorf("list endpointslices: %w", err)
	}
	return svcs, slices, nil
}

// Synced implements Source.
func (s *InformerSource) Synced() bool { return s.svcInf.HasSynced() && s.sliceInf.HasSynced() }

// OnChange implements Source.
func (s *InformerSource) OnChange(fn func()) {
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { fn() },
		UpdateFunc: func(any, any) { fn() },
		DeleteFunc: func(any) { fn() },
	}
	// AddEventHandler fails only on a stopped informer.
	_, _ = s.svcInf.AddEventHandler(h)
	_, _ = s.sliceInf.AddEventHandler(h)
}
