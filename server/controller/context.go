// Package controller holds what Skiff's controllers share: the Context they
// are built from (clients, one shared informer factory, event recording),
// rate-limited work queues and their workers, expectations, and helpers
// for pods, pod templates and owner references. Each controller lives in a
// package of its own below this one; package manager starts them all.
package controller

import (
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// Context is what every controller is built from. The informer factory is
// shared: controllers ask it for informers in their constructors, and the
// manager starts it once they all have.
type Context struct {
	Client    kubernetes.Interface
	Metadata  metadata.Interface // may be nil (tests of controllers that do not need it)
	Informers informers.SharedInformerFactory
	Events    *Events
	Logger    *slog.Logger
	// Now is the controllers' clock.
	Now func() time.Time
}

// NewContext builds a Context with a shared informer factory over client
// and the pod and replica set indexes the controllers use.
func NewContext(client kubernetes.Interface, meta metadata.Interface, log *slog.Logger) (*Context, error) {
	return NewContextWithInformers(client, meta, informers.NewSharedInformerFactory(client, 0), log)
}

// NewContextWithInformers builds a Context over a given shared informer
// factory (on a master, one whose informers read the state in process,
// shared with the scheduler) and adds the controllers' indexes to it.
func NewContextWithInformers(client kubernetes.Interface, meta metadata.Interface, f informers.SharedInformerFactory, log *slog.Logger) (*Context, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := AddIndexes(f); err != nil {
		return nil, err
	}
	cc := &Context{Client: client, Metadata: meta, Informers: f, Logger: log, Now: time.Now}
	cc.Events = NewEvents(client, log)
	return cc, nil
}

// AddIndexes adds the indexes the controllers use to the pod, replica set,
// job and controller revision informers of f. Indexes must be in place
// before an informer starts; AddIndexes may be called more than once.
func AddIndexes(f informers.SharedInformerFactory) error {
	for _, x := range []struct {
		what    string
		inf     cache.SharedIndexInformer
		indexes cache.Indexers
	}{
		{"pod", f.Core().V1().Pods().Informer(), cache.Indexers{IndexControllerUID: indexByControllerUID, IndexNodeName: indexPodByNode}},
		{"replica set", f.Apps().V1().ReplicaSets().Informer(), cache.Indexers{IndexControllerUID: indexByControllerUID}},
		{"job", f.Batch().V1().Jobs().Informer(), cache.Indexers{IndexControllerUID: indexByControllerUID}},
		{"controller revision", f.Apps().V1().ControllerRevisions().Informer(), cache.Indexers{IndexControllerUID: indexByControllerUID}},
	} {
		have := x.inf.GetIndexer().GetIndexers()
		missing := cache.Indexers{}
		for name, fn := range x.indexes {
			if _, ok := have[name]; !ok {
				missing[name] = fn
			}
		}
		if len(missing) == 0 {
			continue
		}
		if err := x.inf.AddIndexers(missing); err != nil {
			return fmt.Errorf("%s indexes: %w", x.what, err)
		}
	}
	return nil
}

// Recorder returns an event recorder reporting as component.
func (cc *Context) Recorder(component string) record.EventRecorder {
	return cc.Events.Recorder(component)
}

// Log returns the named logger of a controller.
func (cc *Context) Log(name string) *slog.Logger {
	return cc.Logger.With("component", "controller", "controller", name)
}

// Index names on the shared informers.
const (
	// IndexControllerUID indexes objects by the UID of their controller
	// owner reference.
	IndexControllerUID = "controllerUID"
	// IndexNodeName indexes pods by spec.nodeName.
	IndexNodeName = "nodeName"
)

func indexByControllerUID(obj any) ([]string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, nil
	}
	if ref := metav1.GetControllerOf(m); ref != nil {
		return []string{string(ref.UID)}, nil
	}
	return nil, nil
}

func indexPodByNode(obj any) ([]string, error) {
	if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
		return []string{p.Spec.NodeName}, nil
	}
	return nil, nil
}

// ByIndex returns the objects of informer inf under index value v, typed.
func ByIndex[T any](inf cache.SharedIndexInformer, index, v string) []T {
	objs, err := inf.GetIndexer().ByIndex(index, v)
	if err != nil {
		return nil
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// QueueNamespaces adds the name of every namespace added or updated to q:
// for controllers that keep something in every namespace.
func QueueNamespaces(nsInf cache.SharedIndexInformer, q Queue, log *slog.Logger) {
	onNS := func(obj any) {
		if n, ok := obj.(*corev1.Namespace); ok {
			q.Add(n.Name)
		}
	}
	AddHandler(nsInf, cache.ResourceEventHandlerFuncs{AddFunc: onNS, UpdateFunc: func(_, obj any) { onNS(obj) }}, log)
}

// ActiveNamespace returns the namespace if it exists and is active (not
// being deleted), nil if not.
func ActiveNamespace(nss corelisters.NamespaceLister, name string) (*corev1.Namespace, error) {
	ns, err := nss.Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if ns.Status.Phase != corev1.NamespaceActive || ns.DeletionTimestamp != nil {
		return nil, nil
	}
	return ns, nil
}
