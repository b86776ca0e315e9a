package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/server/admission"
	"github.com/skiff-io/skiff/server/registry"
)

// maxUpdateAttempts bounds the read-modify-write retries of an update
// without a client resourceVersion.
const maxUpdateAttempts = 5

var errModified = errors.New("the object has been modified; please apply your changes to the latest version and try again")

// handleUpdate serves PUT of an object or of its status.
//
// Both are proposed as fsm.OpUpdate of the whole object with preconditions
// on the UID and resourceVersion read (GuaranteedUpdate): a /status update
// stores the current object with the new status, so it never changes spec
// or metadata, and a main update keeps the stored status.
func (s *APIServer) handleUpdate(req *request) {
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	obj, warnings, err := s.decode.decodeObject(req.r, body, req.kind)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	dry, err := dryRun(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	m := mustAccessor(obj)
	if n := m.GetName(); n != "" && n != req.info.Name {
		s.writeError(req.w, req.r, badRequest("the name of the object (%s) does not match the name on the URL (%s)", n, req.info.Name))
		return
	}
	m.SetName(req.info.Name)
	if err := checkNamespace(req, m); err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	clientRV, err := parseRV(m.GetResourceVersion())
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	addWarnings(req.w, warnings)
	u := &update{
		kind:      req.kind,
		namespace: req.namespace(),
		name:      req.info.Name,
		status:    req.info.Subresource == "status",
		ephemeral: req.info.Subresource == registry.SubEphemeralContainers,
		dry:       dry,
		tryUpdate: func(runtime.Object) (runtime.Object, uint64, error) { return obj.DeepCopyObject(), clientRV, nil },
	}
	if req.kind.AllowCreateOnUpdate && !u.status && !u.ephemeral {
		u.create = func(ctx context.Context) (runtime.Object, error) {
			if clientRV != 0 {
				return nil, apierrors.NewNotFound(req.kind.GroupResource(), req.info.Name)
			}
			return s.create(ctx, req.kind, obj.DeepCopyObject(), dry)
		}
	}
	out, created, err := s.guaranteedUpdate(req.r.Context(), u)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	s.writeObject(req, code, out)
}

// update is one read-modify-write of an object.
type update struct {
	kind            *registry.Kind
	namespace, name string
	status          bool
	// approval: an update of certificatesigningrequests/approval (status
	// is set too; only the conditions and the metadata change).
	approval bool
	// ephemeral: an update of pods/ephemeralcontainers (only
	// spec.ephemeralContainers changes).
	ephemeral bool
	dry       bool
	// tryUpdate returns the client's new version of old (a copy it may
	// change) and the resourceVersion the client required (0: none).
	tryUpdate func(old runtime.Object) (runtime.Object, uint64, error)
	// create, if set, creates the object when it does not exist.
	create func(ctx context.Context) (runtime.Object, error)
}

// guaranteedUpdate reads the object, asks u for its successor, applies the
// kind's update rules and validation and proposes it with UID and
// resourceVersion preconditions. Without a client resourceVersion it
// retries on conflict. An update that removes the last finalizer of an
// object being deleted deletes it.
func (s *APIServer) guaranteedUpdate(ctx context.Context, u *update) (runtime.Object, bool, error) {
	kind := u.kind
	gr := kind.GroupResource()
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		snap, err := s.store.Read(ctx, true, 0)
		if err != nil {
			return nil, false, storeError(err)
		}
		cur := snap.Get(kind.Key(u.namespace, u.name))
		if cur == nil {
			if u.create == nil {
				return nil, false, apierrors.NewNotFound(gr, u.name)
			}
			out, err := u.create(ctx)
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			return out, err == nil, err
		}
		old, err := kind.Decode(cur)
		if err != nil {
			return nil, false, apierrors.NewInternalError(err)
		}
		obj, clientRV, err := u.tryUpdate(old.DeepCopyObject())
		if err != nil {
			return nil, false, err
		}
		if clientRV != 0 && clientRV != cur.ModifyIndex {
			return nil, false, apierrors.NewConflict(gr, u.name, errModified)
		}
		m := mustAccessor(obj)
		if m.GetResourceVersion() == "" {
			// Unconditional: the client updates what we read.
			m.SetResourceVersion(mustAccessor(old).GetResourceVersion())
		}
		if uid := string(m.GetUID()); uid != "" && uid != cur.UID {
			return nil, false, apierrors.NewConflict(gr, u.name,
				fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", uid, cur.UID))
		}
		var final runtime.Object
		var extra []fsm.Mutation
		switch {
		case u.ephemeral:
			final = registry.PrepareForEphemeralContainersUpdate(obj, old)
			if errs := registry.ValidateEphemeralContainersUpdate(final, old); len(errs) > 0 {
				return nil, false, apierrors.NewInvalid(kind.GVK.GroupKind(), u.name, errs)
			}
			// PodSecurity and the other plugins see the pod with its new
			// ephemeral containers, as kube-apiserver's.
			if extra, err = s.admitSubresource(ctx, kind, registry.SubEphemeralContainers, final, old, u.dry); err != nil {
				return nil, false, err
			}
		case u.status:
			sub := registry.SubStatus
			if u.approval {
				sub = registry.SubApproval
			}
			if err := s.statusWebhooks(ctx, kind, sub, obj, old, u.dry, true); err != nil {
				return nil, false, err
			}
			if u.approval {
				if obj, err = s.approved(ctx, kind, obj, old); err != nil { // handler_approval.go
					return nil, false, err
				}
			}
			final = kind.PrepareForStatusUpdate(obj, old)
			if errs := kind.ValidateStatusUpdate(final, old); len(errs) > 0 {
				return nil, false, apierrors.NewInvalid(kind.GVK.GroupKind(), u.name, errs)
			}
			if err := s.statusWebhooks(ctx, kind, sub, final, old, u.dry, false); err != nil {
				return nil, false, err
			}
		default:
			if err := s.admit(ctx, admission.Update, kind, obj, old, u.dry); err != nil {
				return nil, false, err
			}
			kind.PrepareForUpdate(obj, old)
			final = obj
			if errs := kind.ValidateUpdate(final, old); len(errs) > 0 {
				return nil, false, apierrors.NewInvalid(kind.GVK.GroupKind(), u.name, errs)
			}
		}
		final = s.recordUpdate(ctx, kind, final, obj, old) // managedfields.go
		if !u.status && !u.ephemeral {
			if extra, err = s.validateAdmission(ctx, admission.Update, kind, final, old, u.dry); err != nil {
				return nil, false, err
			}
		}
		data, err := kind.Encode(final)
		if err != nil {
			return nil, false, apierrors.NewInternalError(err)
		}
		if bytes.Equal(data, cur.Data) {
			// No change: no write, the resourceVersion stays.
			return old, false, nil
		}
		pre := &fsm.Preconditions{UID: cur.UID, ResourceVersion: cur.ModifyIndex}
		if u.dry {
			mustAccessor(final).SetResourceVersion(mustAccessor(old).GetResourceVersion())
			return final, false, nil
		}
		mut := fsm.Mutation{Op: fsm.OpUpdate, Key: cur.Key, Object: data, Preconditions: pre}
		deleting := !u.status && !u.ephemeral && finalizersDone(final, old)
		if deleting {
			mut = fsm.Mutation{Op: fsm.OpDelete, Key: cur.Key, Preconditions: pre}
		}
		muts := []fsm.Mutation{mut}
		if !deleting {
			muts = append(muts, extra...)
		}
		res, err := s.propose(ctx, muts...)
		if (isConflict(err) && clientRV == 0) || admissionConflict(res, err) || reservationTaken(res, err) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if deleting {
			mustAccessor(final).SetResourceVersion(fmt.Sprint(res.Index))
			return final, false, nil
		}
		out, err := resultObject(kind, res, 0)
		return out, false, err
	}
	return nil, false, apierrors.NewConflict(gr, u.name, errModified)
}

// finalizersDone reports whether the update of old to obj removes the last
// finalizer of an object being deleted whose grace period is over, so the
// object goes.
func finalizersDone(obj, old runtime.Object) bool {
	m, om := mustAccessor(obj), mustAccessor(old)
	if m.GetDeletionTimestamp() == nil || len(m.GetFinalizers()) > 0 || len(om.GetFinalizers()) == 0 {
		return false
	}
	g := m.GetDeletionGracePeriodSeconds()
	return g == nil || *g == 0
}
