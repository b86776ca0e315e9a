package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// Finalizers the garbage collector owns (set by delete's propagationPolicy).
const (
	finalizerOrphan     = metav1.FinalizerOrphanDependents
	finalizerForeground = metav1.FinalizerDeleteDependents
)

// immortalNamespaces may not be deleted (kube-apiserver's NamespaceLifecycle
// admission refuses the same three).
var immortalNamespaces = map[string]bool{
	metav1.NamespaceDefault: true, metav1.NamespaceSystem: true, metav1.NamespacePublic: true,
}

// handleDelete serves DELETE of one object.
func (s *APIServer) handleDelete(req *request) {
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	opts, err := s.decode.decodeDeleteOptions(req.r, body)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	auditRequestBody(req.r, body)
	if req.kind.Resource == "namespaces" && immortalNamespaces[req.info.Name] {
		s.writeError(req.w, req.r, apierrors.NewForbidden(req.kind.GroupResource(), req.info.Name,
			fmt.Errorf("this namespace may not be deleted")))
		return
	}
	ctx := req.r.Context()
	for attempt := 0; ; attempt++ {
		snap, err := s.store.Read(ctx, true, 0)
		if err != nil {
			s.writeError(req.w, req.r, storeError(err))
			return
		}
		cur, obj, err := getObject(snap, req.kind, req.namespace(), req.info.Name)
		if err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
		if err := checkDeletePreconditions(req.kind, cur, opts); err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
		out, deleted, err := s.deleteObject(ctx, snap, req.kind, cur, obj, opts)
		if isConflict(err) && attempt+1 < maxUpdateAttempts {
			continue
		}
		if err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
		if deleted && !req.kind.ReturnDeletedObject {
			m := mustAccessor(out)
			s.writeStatus(req, http.StatusOK, &metav1.Status{
				TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status:   metav1.StatusSuccess,
				Details: &metav1.StatusDetails{
					Name:  m.GetName(),
					Group: req.kind.GVK.Group,
					Kind:  req.kind.Resource,
					UID:   m.GetUID(),
				},
			})
			return
		}
		// As kube-apiserver: 202 when the object stays and the client
		// asked for cascading deletion with orphanDependents=false.
		code := http.StatusOK
		//nolint:staticcheck // orphanDependents is still part of the API
		if o := opts.OrphanDependents; !deleted && o != nil && !*o {
			code = http.StatusAccepted
		}
		s.writeObject(req, code, out)
		return
	}
}

// checkDeletePreconditions applies DeleteOptions.preconditions.
func checkDeletePreconditions(kind *registry.Kind, cur *state.Object, opts *metav1.DeleteOptions) error {
	p := opts.Preconditions
	if p == nil {
		return nil
	}
	gr := kind.GroupResource()
	if p.UID != nil && string(*p.UID) != cur.UID {
		return apierrors.NewConflict(gr, cur.Key.Name,
			fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, cur.UID))
	}
	if p.ResourceVersion != nil && *p.ResourceVersion != strconv.FormatUint(cur.ModifyIndex, 10) {
		return apierrors.NewConflict(gr, cur.Key.Name,
			fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, cur.ModifyIndex))
	}
	return nil
}

// deleteObject deletes cur (decoded as obj). An object with finalizers
// (including those propagationPolicy Orphan/Foreground add for the garbage
// collector), or one that deletes gracefully (a pod on a node), gets
// deletionTimestamp and stays: the result is the updated object and
// deleted is false. A namespace without finalizers goes at once together
// with everything in it.
func (s *APIServer) deleteObject(ctx context.Context, snap *state.Snapshot, kind *registry.Kind, cur *state.Object, obj runtime.Object, opts *metav1.DeleteOptions) (runtime.Object, bool, error) {
	dry := len(opts.DryRun) > 0
	if err := s.admitDelete(ctx, kind, obj, opts, dry); err != nil {
		return nil, false, err
	}
	m := mustAccessor(obj)
	pre := &fsm.Preconditions{UID: cur.UID, ResourceVersion: cur.ModifyIndex}
	grace, graceful := kind.GracefulDelete(obj, opts)
	finalizers := gcFinalizers(m.GetFinalizers(), opts)
	ns, isNamespace := obj.(*corev1.Namespace)
	if isNamespace && len(ns.Spec.Finalizers) > 0 {
		// The namespace's own finalizers (spec.finalizers) hold it in
		// Terminating until the namespace controller finalizes it.
		graceful, grace = true, 0
	}
	if len(finalizers) == 0 && !graceful {
		if m.GetDeletionTimestamp() == nil || len(m.GetFinalizers()) == 0 {
			return s.deleteNow(ctx, snap, kind, cur, obj, pre, dry)
		}
	}

	// Graceful: set (or shorten) deletionTimestamp and keep the object.
	updated := obj.DeepCopyObject()
	um := mustAccessor(updated)
	um.SetFinalizers(finalizers)
	now := s.now().UTC().Truncate(time.Second)
	if dt := um.GetDeletionTimestamp(); dt == nil {
		t := metav1.NewTime(now.Add(time.Duration(grace) * time.Second))
		um.SetDeletionTimestamp(&t)
		um.SetDeletionGracePeriodSeconds(&grace)
	} else if g := um.GetDeletionGracePeriodSeconds(); g != nil && grace < *g {
		// A shorter grace period (0 included: the kubelet's final delete
		// of a pod held by finalizers) shortens the wait, so removing the
		// last finalizer then deletes the object.
		t := metav1.NewTime(now.Add(time.Duration(grace) * time.Second))
		if t.Before(dt) {
			um.SetDeletionTimestamp(&t)
		}
		um.SetDeletionGracePeriodSeconds(&grace)
	}
	if n, ok := updated.(*corev1.Namespace); ok {
		n.Status.Phase = corev1.NamespaceTerminating
	}
	if grace == 0 && len(finalizers) == 0 && !isNamespace {
		// Grace period over and nothing to wait for.
		return s.deleteNow(ctx, snap, kind, cur, obj, pre, dry)
	}
	data, err := kind.Encode(updated)
	if err != nil {
		return nil, false, apierrors.NewInternalError(err)
	}
	if string(data) == string(cur.Data) || dry {
		return updated, false, nil
	}
	res, err := s.propose(ctx, fsm.Mutation{Op: fsm.OpUpdate, Key: cur.Key, Object: data, Preconditions: pre})
	if err != nil {
		return nil, false, err
	}
	out, err := resultObject(kind, res, 0)
	return out, false, err
}

// deleteNow removes the object (a namespace with its contents) and returns
// its last state stamped with the delete's index.
func (s *APIServer) deleteNow(ctx context.Context, snap *state.Snapshot, kind *registry.Kind, cur *state.Object, obj runtime.Object, pre *fsm.Preconditions, dry bool) (runtime.Object, bool, error) {
	if dry {
		return obj, true, nil
	}
	muts := []fsm.Mutation{{Op: fsm.OpDelete, Key: cur.Key, Preconditions: pre}}
	muts = append(muts, s.release(snap, obj)...)
	if _, ok := obj.(*corev1.Namespace); ok {
		snap.InNamespace(cur.Key.Name, func(o *state.Object) bool {
			muts = append(muts, fsm.Mutation{Op: fsm.OpDelete, Key: o.Key,
				Preconditions: &fsm.Preconditions{UID: o.UID, ResourceVersion: o.ModifyIndex}})
			return true
		})
	}
	res, err := s.propose(ctx, muts...)
	if err != nil {
		return nil, false, err
	}
	out, err := resultObject(kind, res, 0)
	return out, true, err
}

// gcFinalizers returns the object's finalizers adjusted for the delete's
// propagation policy: Orphan adds "orphan", Foreground adds
// "foregroundDeletion", Background removes both.
func gcFinalizers(cur []string, opts *metav1.DeleteOptions) []string {
	policy := opts.PropagationPolicy
	//nolint:staticcheck // orphanDependents is still part of the API
	if policy == nil && opts.OrphanDependents != nil {
		p := metav1.DeletePropagationBackground
		if *opts.OrphanDependents { //nolint:staticcheck
			p = metav1.DeletePropagationOrphan
		}
		policy = &p
	}
	if policy == nil {
		return cur
	}
	out := make([]string, 0, len(cur)+1)
	for _, f := range cur {
		if f != finalizerOrphan && f != finalizerForeground {
			out = append(out, f)
		}
	}
	switch *policy {
	case metav1.DeletePropagationOrphan:
		out = append(out, finalizerOrphan)
	case metav1.DeletePropagationForeground:
		out = append(out, finalizerForeground)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// handleDeleteCollection deletes every object matching the selectors in the
// namespace and answers the list of what was deleted (or marked).
func (s *APIServer) handleDeleteCollection(req *request) {
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	opts, err := s.decode.decodeDeleteOptions(req.r, body)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	auditRequestBody(req.r, body)
	lopts, err := parseListOptions(req.r, req.kind, false)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	ctx := req.r.Context()
	snap, err := s.store.Read(ctx, true, 0)
	if err != nil {
		s.writeError(req.w, req.r, storeError(err))
		return
	}
	lopts.limit = 0
	items, _, _, err := s.collect(req, snap, lopts, "")
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	var out []runtime.Object
	for _, it := range items {
		name := mustAccessor(it).GetName()
		for attempt := 0; ; attempt++ {
			snap, err := s.store.Read(ctx, true, 0)
			if err != nil {
				s.writeError(req.w, req.r, storeError(err))
				return
			}
			cur, obj, err := getObject(snap, req.kind, mustAccessor(it).GetNamespace(), name)
			if apierrors.IsNotFound(err) {
				break
			}
			if err != nil {
				s.writeError(req.w, req.r, err)
				return
			}
			o, _, err := s.deleteObject(ctx, snap, req.kind, cur, obj, opts)
			if isConflict(err) && attempt+1 < maxUpdateAttempts {
				continue
			}
			if apierrors.IsNotFound(err) {
				break
			}
			if err != nil {
				s.writeError(req.w, req.r, err)
				return
			}
			out = append(out, o)
			break
		}
	}
	rv := snap.Index()
	if cur, err := s.store.Read(ctx, false, 0); err == nil {
		rv = cur.Index()
	}
	s.writeList(req, out, metav1.ListMeta{ResourceVersion: strconv.FormatUint(rv, 10)})
}
