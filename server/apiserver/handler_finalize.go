package apiserver

import (
	"bytes"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-io/skiff/fsm"
)

// handleFinalize serves PUT namespaces/<name>/finalize: it changes the
// namespace's spec.finalizers and nothing else. A namespace being deleted
// that is left with no finalizer of either kind is deleted, as
// kube-apiserver does.
func (s *APIServer) handleFinalize(req *request) {
	b, err := decodePutBody[*corev1.Namespace](s, req, "Namespace")
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	in, dry, clientRV := b.obj, b.dry, b.rv
	ctx := req.r.Context()
	gr := req.kind.GroupResource()
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		snap, err := s.store.Read(ctx, true, 0)
		if err != nil {
			s.writeError(req.w, req.r, storeError(err))
			return
		}
		cur, old, err := getObject(snap, req.kind, "", req.info.Name)
		if err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
		if clientRV != 0 && clientRV != cur.ModifyIndex {
			s.writeError(req.w, req.r, apierrors.NewConflict(gr, req.info.Name, errModified))
			return
		}
		if in.UID != "" && string(in.UID) != cur.UID {
			s.writeError(req.w, req.r, apierrors.NewConflict(gr, req.info.Name,
				fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", in.UID, cur.UID)))
			return
		}
		ns := old.(*corev1.Namespace).DeepCopy()
		ns.Spec.Finalizers = in.Spec.Finalizers
		if errs := req.kind.ValidateUpdate(ns, old); len(errs) > 0 {
			s.writeError(req.w, req.r, apierrors.NewInvalid(req.kind.GVK.GroupKind(), req.info.Name, errs))
			return
		}
		data, err := req.kind.Encode(ns)
		if err != nil {
			s.writeError(req.w, req.r, apierrors.NewInternalError(err))
			return
		}
		if bytes.Equal(data, cur.Data) || dry {
			s.writeObject(req, http.StatusOK, ns)
			return
		}
		pre := &fsm.Preconditions{UID: cur.UID, ResourceVersion: cur.ModifyIndex}
		mut := fsm.Mutation{Op: fsm.OpUpdate, Key: cur.Key, Object: data, Preconditions: pre}
		deleting := ns.DeletionTimestamp != nil && len(ns.Spec.Finalizers) == 0 && len(ns.Finalizers) == 0
		if deleting {
			mut = fsm.Mutation{Op: fsm.OpDelete, Key: cur.Key, Preconditions: pre}
		}
		res, err := s.propose(ctx, mut)
		if isConflict(err) && clientRV == 0 {
			continue
		}
		if err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
		if deleting {
			ns.ResourceVersion = fmt.Sprint(res.Index)
			s.writeObject(req, http.StatusOK, ns)
			return
		}
		out, err := resultObject(req.kind, res, 0)
		if err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
		s.writeObject(req, http.StatusOK, out)
		return
	}
	s.writeError(req.w, req.r, apierrors.NewConflict(gr, req.info.Name, errModified))
}
