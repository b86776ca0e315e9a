package apiserver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// tooLargeRVWait is how long a read at a resourceVersion newer than the
// local state waits before answering "Too large resource version".
const tooLargeRVWait = 3 * time.Second

// parseRV parses a resourceVersion ("" → 0).
func parseRV(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	rv, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, badRequest("invalid resource version %q: %v", s, err)
	}
	return rv, nil
}

// readAt returns a snapshot for a request's resourceVersion: "" reads
// linearizably, "0" reads the local state, "N" waits until the local state
// has applied N.
func (s *APIServer) readAt(ctx context.Context, rv string) (*state.Snapshot, error) {
	if rv == "" {
		snap, err := s.store.Read(ctx, true, 0)
		if err != nil {
			return nil, storeError(err)
		}
		return snap, nil
	}
	n, err := parseRV(rv)
	if err != nil {
		return nil, err
	}
	return s.readMin(ctx, n)
}

// readMin reads the local state once it has applied at least n.
func (s *APIServer) readMin(ctx context.Context, n uint64) (*state.Snapshot, error) {
	if n == 0 {
		snap, err := s.store.Read(ctx, false, 0)
		if err != nil {
			return nil, storeError(err)
		}
		return snap, nil
	}
	wctx, cancel := context.WithTimeout(ctx, tooLargeRVWait)
	defer cancel()
	snap, err := s.store.Read(wctx, false, n)
	if err == nil {
		return snap, nil
	}
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		cur := uint64(0)
		if now, err := s.store.Read(ctx, false, 0); err == nil {
			cur = now.Index()
		}
		return nil, tooLargeResourceVersion(n, cur)
	}
	return nil, storeError(err)
}

// tooLargeResourceVersion is kube-apiserver's answer to a read at a
// resourceVersion the server has not reached.
func tooLargeResourceVersion(rv, cur uint64) error {
	err := apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", rv, cur), 1)
	err.ErrStatus.Details.Causes = []metav1.StatusCause{{
		Type:    metav1.CauseTypeResourceVersionTooLarge,
		Message: "Too large resource version",
	}}
	return err
}

// tooOldResourceVersion is the 410 Expired of a watch or list at a
// resourceVersion the server no longer has.
func tooOldResourceVersion(rv, cur uint64) *apierrors.StatusError {
	return apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", rv, cur))
}

// getObject reads namespace/name of kind from snap (decoded, with its
// resourceVersion) or answers 404.
func getObject(snap *state.Snapshot, kind *registry.Kind, namespace, name string) (*state.Object, runtime.Object, error) {
	o := snap.Get(kind.Key(namespace, name))
	if o == nil {
		return nil, nil, apierrors.NewNotFound(kind.GroupResource(), name)
	}
	obj, err := kind.Decode(o)
	if err != nil {
		return nil, nil, apierrors.NewInternalError(err)
	}
	return o, obj, nil
}

// propose encodes and applies mutations (one, or a batch) and returns the
// result; business errors come back as the Status of the failing mutation.
func (s *APIServer) propose(ctx context.Context, muts ...fsm.Mutation) (*fsm.Result, error) {
	var (
		entry []byte
		err   error
	)
	if s.cfg.Sealer != nil {
		// Sealing replaces Object in the caller's slice: copy it first.
		muts = append([]fsm.Mutation(nil), muts...)
		for i := range muts {
			if err := s.cfg.Sealer.Seal(ctx, &muts[i]); err != nil {
				return nil, storeError(err)
			}
		}
	}
	if len(muts) == 1 {
		entry, err = fsm.EncodeMutation(muts[0])
	} else {
		entry, err = fsm.EncodeBatch(fsm.Batch{Mutations: muts})
	}
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	res, err := s.store.Apply(ctx, entry)
	if err != nil {
		return nil, storeError(err)
	}
	if res.Err != nil {
		m := muts[0]
		if res.Err.Op < len(muts) {
			m = muts[res.Err.Op]
		}
		gr := groupResourceOfKey(s.reg, m.Key)
		return res, fsmError(gr, m.Key.Name, res.Err)
	}
	return res, nil
}

// resultObject decodes the i-th object of an Apply result.
func resultObject(kind *registry.Kind, res *fsm.Result, i int) (runtime.Object, error) {
	if i >= len(res.Objects) || res.Objects[i] == nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("apply result has no object %d", i))
	}
	obj, err := kind.Decode(res.Objects[i])
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return obj, nil
}

// isConflict reports whether err is a 409 Conflict.
func isConflict(err error) bool { return apierrors.IsConflict(err) }

func groupResourceOfKey(reg *registry.Registry, k state.Key) (gr schema.GroupResource) {
	if kind, ok := reg.ByStorageResource(k.Resource); ok {
		return kind.GroupResource()
	}
	return schema.GroupResource{Resource: k.Resource}
}
