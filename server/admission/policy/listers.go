package policy

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// The library reads namespaces and params through client-go listers (and
// a client for cache misses); here both read the request's state snapshot,
// which is always in sync.

// namespaceLister lists the Namespaces of a snapshot.
type namespaceLister struct {
	snap *state.Snapshot
	kind *registry.Kind
}

func (l namespaceLister) List(sel labels.Selector) ([]*corev1.Namespace, error) {
	var out []*corev1.Namespace
	objs, err := listObjects(l.snap, l.kind, "", sel)
	for _, o := range objs {
		out = append(out, o.(*corev1.Namespace))
	}
	return out, err
}

func (l namespaceLister) Get(name string) (*corev1.Namespace, error) {
	o, err := getObject(l.snap, l.kind, "", name)
	if err != nil {
		return nil, err
	}
	return o.(*corev1.Namespace), nil
}

// namespaceClient is the client the library asks when its lister misses a
// namespace: it answers from the same snapshot (so, NotFound). Only
// CoreV1().Namespaces().Get is called.
func namespaceClient(snap *state.Snapshot, kind *registry.Kind) kubernetes.Interface {
	return nsClientset{l: namespaceLister{snap: snap, kind: kind}}
}

type nsClientset struct {
	kubernetes.Interface
	l namespaceLister
}

func (c nsClientset) CoreV1() corev1client.CoreV1Interface { return nsCoreV1{l: c.l} }

type nsCoreV1 struct {
	corev1client.CoreV1Interface
	l namespaceLister
}

func (c nsCoreV1) Namespaces() corev1client.NamespaceInterface { return nsGetter{l: c.l} }

type nsGetter struct {
	corev1client.NamespaceInterface
	l namespaceLister
}

func (g nsGetter) Get(_ context.Context, name string, _ metav1.GetOptions) (*corev1.Namespace, error) {
	return g.l.Get(name)
}

// paramInformer serves a policy's params (objects of its paramKind) from
// a snapshot; the library calls Lister() and Informer().HasSynced only.
type paramInformer struct {
	snap *state.Snapshot
	kind *registry.Kind
}

func (p paramInformer) Informer() cache.SharedIndexInformer { return synced{} }

func (p paramInformer) Lister() cache.GenericLister { return paramLister(p) }

// synced is an informer that has always synced.
type synced struct{ cache.SharedIndexInformer }

func (synced) HasSynced() bool { return true }

type paramLister struct {
	snap *state.Snapshot
	kind *registry.Kind
}

func (l paramLister) List(sel labels.Selector) ([]runtime.Object, error) {
	return listObjects(l.snap, l.kind, "", sel)
}

func (l paramLister) Get(name string) (runtime.Object, error) {
	return getObject(l.snap, l.kind, "", name)
}

func (l paramLister) ByNamespace(ns string) cache.GenericNamespaceLister {
	return paramNamespaceLister{l: l, ns: ns}
}

type paramNamespaceLister struct {
	l  paramLister
	ns string
}

func (n paramNamespaceLister) List(sel labels.Selector) ([]runtime.Object, error) {
	return listObjects(n.l.snap, n.l.kind, n.ns, sel)
}

func (n paramNamespaceLister) Get(name string) (runtime.Object, error) {
	return getObject(n.l.snap, n.l.kind, n.ns, name)
}

func listObjects(snap *state.Snapshot, kind *registry.Kind, ns string, sel labels.Selector) ([]runtime.Object, error) {
	if kind == nil {
		return nil, nil
	}
	var (
		out  []runtime.Object
		derr error
	)
	snap.List(kind.StorageResource(), ns, "", func(o *state.Object) bool {
		obj, err := kind.Decode(o)
		if err != nil {
			derr = apierrors.NewInternalError(err)
			return false
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			derr = apierrors.NewInternalError(err)
			return false
		}
		if sel == nil || sel.Matches(labels.Set(m.GetLabels())) {
			out = append(out, obj)
		}
		return true
	})
	return out, derr
}

func getObject(snap *state.Snapshot, kind *registry.Kind, ns, name string) (runtime.Object, error) {
	if kind == nil {
		return nil, apierrors.NewNotFound(corev1.Resource("namespaces"), name)
	}
	o := snap.Get(kind.Key(ns, name))
	if o == nil {
		return nil, apierrors.NewNotFound(kind.GroupResource(), name)
	}
	obj, err := kind.Decode(o)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return obj, nil
}
