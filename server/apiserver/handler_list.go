package apiserver

import (
	"fmt"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/fsm/state"
)

// handleList serves a list with selectors and limit/continue pagination.
// The list's resourceVersion is the snapshot's index; a continued page
// reads the current state and keeps the first page's resourceVersion. A
// token older than continueCompactInterval is 410 with an inconsistent
// continue token, which continues at the latest resourceVersion.
func (s *APIServer) handleList(req *request) {
	opts, err := parseListOptions(req.r, req.kind, false)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	ctx := req.r.Context()
	var (
		snap  *state.Snapshot
		after string
		rv    uint64
	)
	at := s.now()
	switch c := opts.cont; {
	case c != nil && c.expired(at):
		s.writeError(req.w, req.r, inconsistentContinue(c, at))
		return
	case c != nil && c.ResourceVersion == -1:
		snap, err = s.readAt(ctx, "")
		after = c.Start
	case c != nil:
		snap, err = s.readMin(ctx, uint64(c.ResourceVersion))
		after, rv = c.Start, uint64(c.ResourceVersion)
		if c.At > 0 {
			at = time.Unix(c.At, 0)
		}
	default:
		snap, err = s.readAt(ctx, opts.resourceVersion)
	}
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	if rv == 0 {
		rv = snap.Index()
	}
	if opts.rvMatch == metav1.ResourceVersionMatchExact {
		want, _ := parseRV(opts.resourceVersion)
		if want != snap.Index() {
			// The state at an exact older index is not kept.
			s.writeError(req.w, req.r, tooOldResourceVersion(want, snap.Index()))
			return
		}
	}
	items, lastID, more, err := s.collect(req, snap, opts, after)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	lm := metav1.ListMeta{ResourceVersion: strconv.FormatUint(rv, 10)}
	if more {
		lm.Continue = encodeContinue(int64(rv), lastID, at)
		if !opts.hasSelectors() {
			n := int64(0)
			snap.List(req.kind.StorageResource(), req.namespace(), lastID, func(*state.Object) bool { n++; return true })
			lm.RemainingItemCount = &n
		}
	}
	s.writeList(req, items, lm)
}

// collect returns the matching objects after the ID after, at most
// opts.limit of them (0: all), the ID of the last one and whether more
// matching objects follow.
func (s *APIServer) collect(req *request, snap *state.Snapshot, opts *listOptions, after string) ([]runtime.Object, string, bool, error) {
	if opts.limit == 0 {
		items, lastID, err := s.collectAll(req, snap, opts, after) // listdecode.go
		if err != nil {
			return nil, "", false, fmt.Errorf("list %s: %w", req.kind.Resource, err)
		}
		return items, lastID, false, nil
	}
	var (
		items  []runtime.Object
		lastID string
		more   bool
		derr   error
	)
	snap.List(req.kind.StorageResource(), req.namespace(), after, func(o *state.Object) bool {
		obj, err := req.kind.Decode(o)
		if err != nil {
			derr = err
			return false
		}
		if !opts.matches(req.kind, obj) {
			return true
		}
		if opts.limit > 0 && int64(len(items)) >= opts.limit {
			more = true
			return false
		}
		items = append(items, obj)
		lastID = o.ID
		return true
	})
	if derr != nil {
		return nil, "", false, fmt.Errorf("list %s: %w", req.kind.Resource, derr)
	}
	return items, lastID, more, nil
}

// mustAccessor returns the metadata of a typed object.
func mustAccessor(obj runtime.Object) metav1.Object {
	m, err := meta.Accessor(obj)
	if err != nil {
		panic(fmt.Sprintf("apiserver: %T has no metadata: %v", obj, err))
	}
	return m
}
