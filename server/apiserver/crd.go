package apiserver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/fsm/state"
)

// crdSync keeps the registry's custom resources in step with the
// CustomResourceDefinitions of the local state: every master serves a
// custom resource once its CRD is applied here. It is checked before each
// request; the CRD table is read again only when the state has changed
// since, and the registry rebuilt only when a CRD has.
type crdSync struct {
	// seen is the last state index looked at, read without the lock.
	seen        atomic.Uint64
	mu          sync.Mutex
	index       uint64
	fingerprint string
}

// syncCRDs serves the CRDs of the local state (of the leader's committed
// state when linearizable: a follower that has not applied a new CRD yet
// must not answer 404 for its resource).
func (s *APIServer) syncCRDs(ctx context.Context, linearizable bool) {
	snap, err := s.store.Read(ctx, linearizable, 0)
	if err != nil {
		s.log.Debug("read CustomResourceDefinitions", "err", err)
		return
	}
	c := &s.crds
	if snap.Index() <= c.seen.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if snap.Index() <= c.index {
		return
	}
	c.index = snap.Index()
	defer c.seen.Store(c.index)
	kind, ok := s.reg.Lookup(apiextensionsv1.GroupName, "v1", "customresourcedefinitions")
	if !ok {
		return
	}
	var (
		fp   strings.Builder
		objs []*state.Object
	)
	snap.List(kind.StorageResource(), "", "", func(o *state.Object) bool {
		fmt.Fprintf(&fp, "%s@%d,", o.Key.Name, o.ModifyIndex)
		objs = append(objs, o)
		return true
	})
	if fp.String() == c.fingerprint {
		return
	}
	crds := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(objs))
	for _, o := range objs {
		obj, err := kind.Decode(o)
		if err != nil {
			s.log.Error("CustomResourceDefinition not served", "name", o.Key.Name, "err", err)
			continue
		}
		crds = append(crds, obj.(*apiextensionsv1.CustomResourceDefinition))
	}
	if err := s.reg.SetCustomResourceDefinitions(crds); err != nil {
		s.log.Warn("some CustomResourceDefinitions are not served", "err", err)
	}
	c.fingerprint = fp.String()
	s.log.Info("custom resources updated", "crds", len(crds), "index", c.index)
}

// unstructuredMeta is the metadata of a custom object (a zero value for
// metadata that does not decode; such an object was refused on write).
func unstructuredMeta(u *unstructured.Unstructured) metav1.ObjectMeta {
	var om metav1.ObjectMeta
	if m, ok := u.Object["metadata"].(map[string]any); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &om); err != nil {
			return metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID()}
		}
	}
	return om
}

// terminatingCRD is kube-apiserver's answer to a create of a custom
// resource whose CRD is being deleted.
func terminatingCRD(req *request) error {
	err := apierrors.NewMethodNotSupported(req.kind.GroupResource(), "create")
	err.ErrStatus.Message = "create not allowed while custom resource definition is terminating"
	return err
}
