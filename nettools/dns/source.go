package dns

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Source is what the DNS server reads the cluster from: the Services and
// EndpointSlices of every namespace. The agent's is fed by informers
// (InformerSource); tests use FakeSource.
type Source interface {
	// List returns the current objects. They are shared: never modified.
	List() ([]*corev1.Service, []*discoveryv1.EndpointSlice, error)
	// Synced reports whether the first listing is complete.
	Synced() bool
	// OnChange registers fn, called from any goroutine after any change.
	OnChange(fn func())
}

// FakeSource is an in-memory Source for tests.
type FakeSource struct {
	mu     sync.Mutex
	svcs   map[string]*corev1.Service
	slices map[string]*discoveryv1.EndpointSlice
	fns    []func()
}

// NewFakeSource returns an empty FakeSource.
func NewFakeSource() *FakeSource {
	return &FakeSource{svcs: map[string]*corev1.Service{}, slices: map[string]*discoveryv1.EndpointSlice{}}
}

// List implements Source.
func (f *FakeSource) List() ([]*corev1.Service, []*discoveryv1.EndpointSlice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	svcs := make([]*corev1.Service, 0, len(f.svcs))
	for _, s := range f.svcs {
		svcs = append(svcs, s)
	}
	slices := make([]*discoveryv1.EndpointSlice, 0, len(f.slices))
	for _, s := range f.slices {
		slices = append(slices, s)
	}
	return svcs, slices, nil
}

// Synced implements Source.
func (f *FakeSource) Synced() bool { return true }

// OnChange implements Source.
func (f *FakeSource) OnChange(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fns = append(f.fns, fn)
}

// SetService adds or replaces a Service.
func (f *FakeSource) SetService(s *corev1.Service) {
	f.change(func() { f.svcs[s.Namespace+"/"+s.Name] = s })
}

// DeleteService removes a Service.
func (f *FakeSource) DeleteService(namespace, name string) {
	f.change(func() { delete(f.svcs, namespace+"/"+name) })
}

// SetEndpointSlice adds or replaces an EndpointSlice.
func (f *FakeSource) SetEndpointSlice(s *discoveryv1.EndpointSlice) {
	f.change(func() { f.slices[s.Namespace+"/"+s.Name] = s })
}

// DeleteEndpointSlice removes an EndpointSlice.
func (f *FakeSource) DeleteEndpointSlice(namespace, name string) {
	f.change(func() { delete(f.slices, namespace+"/"+name) })
}

func (f *FakeSource) change(do func()) {
	f.mu.Lock()
	do()
	fns := append([]func(){}, f.fns...)
	f.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}
