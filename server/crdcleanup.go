package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// crdCleanupBatch is how many custom objects one Raft entry deletes.
const crdCleanupBatch = 200

// crdCleanupLoop (leader) finishes the deletion of CustomResourceDefinitions:
// a deleted CRD keeps registry.CRDCleanupFinalizer until this loop has
// deleted its custom objects (every version, every namespace), then the
// loop removes the finalizer and with it the CRD. It runs after every change
// of the CRD table, until ctx ends.
func (s *Server) crdCleanupLoop(ctx context.Context) {
	log := s.log.With("loop", "crd-cleanup")
	kind, ok := registry.New().Lookup(apiextensionsv1.GroupName, "v1", "customresourcedefinitions")
	if !ok {
		log.Error("CustomResourceDefinition kind missing")
		return
	}
	filter := fsm.WatchFilter{Resource: kind.StorageResource()}
	for {
		index := s.fsm.Index()
		if err := s.cleanupDeletedCRDs(ctx, kind); err != nil && ctx.Err() == nil {
			log.Warn("clean up deleted CustomResourceDefinitions", "err", err)
		}
		w, err := s.fsm.WatchFiltered(index, filter)
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err = w.Next(wctx)
			cancel()
			w.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			// Expired (a restore): look again after a pause.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// cleanupDeletedCRDs deletes the objects of every CRD being deleted and
// then releases the CRD.
func (s *Server) cleanupDeletedCRDs(ctx context.Context, kind *registry.Kind) error {
	var deleted []*state.Object
	s.fsm.Read().List(kind.StorageResource(), "", "", func(o *state.Object) bool {
		deleted = append(deleted, o)
		return true
	})
	var errs []error
	for _, o := range deleted {
		obj, err := kind.Decode(o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		crd := obj.(*apiextensionsv1.CustomResourceDefinition)
		if crd.DeletionTimestamp == nil || !slices.Contains(crd.Finalizers, registry.CRDCleanupFinalizer) {
			continue
		}
		n, err := s.deleteCustomObjects(ctx, crd.Spec.Group+"/"+crd.Spec.Names.Plural)
		if err != nil {
			errs = append(errs, fmt.Errorf("CustomResourceDefinition %s: %w", crd.Name, err))
			continue
		}
		if err := s.releaseCRD(ctx, kind, o, crd); err != nil {
			errs = append(errs, fmt.Errorf("CustomResourceDefinition %s: %w", crd.Name, err))
			continue
		}
		s.log.Info("deleted CustomResourceDefinition and its objects", "name", crd.Name, "objects", n)
	}
	return errors.Join(errs...)
}

// deleteCustomObjects deletes every object stored under resource
// ("<group>/<plural>") and returns how many it deleted.
func (s *Server) deleteCustomObjects(ctx context.Context, resource string) (int, error) {
	total := 0
	for {
		var muts []fsm.Mutation
		s.fsm.Read().List(resource, "", "", func(o *state.Object) bool {
			muts = append(muts, fsm.Mutation{Op: fsm.OpDelete, Key: o.Key,
				Preconditions: &fsm.Preconditions{UID: o.UID}})
			return len(muts) < crdCleanupBatch
		})
		if len(muts) == 0 {
			return total, nil
		}
		res, err := s.applyBatch(ctx, muts)
		if err != nil {
			return total, err
		}
		if res.Err != nil && res.Err.Reason != fsm.ReasonNotFound && res.Err.Reason != fsm.ReasonConflict {
			return total, res.Err
		}
		if res.Err == nil {
			total += len(muts)
		}
	}
}

// releaseCRD removes the cleanup finalizer of crd (stored as o): the CRD
// is deleted when no other finalizer is left.
func (s *Server) releaseCRD(ctx context.Context, kind *registry.Kind, o *state.Object, crd *apiextensionsv1.CustomResourceDefinition) error {
	pre := &fsm.Preconditions{UID: o.UID, ResourceVersion: o.ModifyIndex}
	crd.Finalizers = slices.DeleteFunc(crd.Finalizers, func(f string) bool { return f == registry.CRDCleanupFinalizer })
	mut := fsm.Mutation{Op: fsm.OpDelete, Key: o.Key, Preconditions: pre}
	if len(crd.Finalizers) > 0 {
		data, err := kind.Encode(crd)
		if err != nil {
			return err
		}
		mut = fsm.Mutation{Op: fsm.OpUpdate, Key: o.Key, Object: data, Preconditions: pre}
	}
	res, err := s.applyBatch(ctx, []fsm.Mutation{mut})
	if err != nil {
		return err
	}
	if res.Err != nil && res.Err.Reason != fsm.ReasonConflict && res.Err.Reason != fsm.ReasonNotFound {
		return res.Err // a conflict is settled on the next pass
	}
	return nil
}
