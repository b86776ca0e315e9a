package apiserver

import (
	"context"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/admission"
	"github.com/skiff-io/skiff/server/registry"
)

// Admission mutates and validates objects on create and update
// (server/admission.Chain). Validate's mutations (quota charges) are
// proposed in the same Raft entry as the write.
type Admission interface {
	Admit(ctx context.Context, a *admission.Attributes) error
	Validate(ctx context.Context, a *admission.Attributes) ([]fsm.Mutation, error)
}

func admissionAttrs(op admission.Operation, kind *registry.Kind, obj, old runtime.Object, dry bool) *admission.Attributes {
	m := mustAccessor(obj)
	return &admission.Attributes{Operation: op, Kind: kind, Namespace: m.GetNamespace(), Name: m.GetName(),
		Object: obj, OldObject: old, DryRun: dry}
}

// Releaser is an optional part of Admission: the writes that free what a
// deleted object held (a Service's cluster IP and node ports), proposed in
// the same Raft entry as the delete.
type Releaser interface {
	Release(snap *state.Snapshot, obj runtime.Object) []fsm.Mutation
}

// release returns the admission's writes for the delete of obj.
func (s *APIServer) release(snap *state.Snapshot, obj runtime.Object) []fsm.Mutation {
	if r, ok := s.cfg.Admission.(Releaser); ok {
		return r.Release(snap, obj)
	}
	return nil
}

// reservationTaken reports whether a proposal failed because one of the
// admission's extra creates (a cluster IP or node port reservation) was
// taken by a concurrent write: allocate again.
func reservationTaken(res *fsm.Result, err error) bool {
	return err != nil && res != nil && res.Err != nil && res.Err.Op > 0 && res.Err.Reason == fsm.ReasonAlreadyExists
}

// admit defaults obj, as kube-apiserver does on decoding, and runs the
// mutating admission plugins on it.
func (s *APIServer) admit(ctx context.Context, op admission.Operation, kind *registry.Kind, obj, old runtime.Object, dry bool) error {
	kind.Default(obj)
	if s.cfg.Admission == nil {
		return nil
	}
	return admissionError(s.cfg.Admission.Admit(ctx, admissionAttrs(op, kind, obj, old, dry)))
}

// validateAdmission runs the validating admission plugins.
func (s *APIServer) validateAdmission(ctx context.Context, op admission.Operation, kind *registry.Kind, obj, old runtime.Object, dry bool) ([]fsm.Mutation, error) {
	if s.cfg.Admission == nil {
		return nil, nil
	}
	muts, err := s.cfg.Admission.Validate(ctx, admissionAttrs(op, kind, obj, old, dry))
	return muts, admissionError(err)
}

// admitSubresource runs the mutating and validating plugins on an update
// of a subresource that changes the object (pods/ephemeralcontainers).
func (s *APIServer) admitSubresource(ctx context.Context, kind *registry.Kind, sub string, obj, old runtime.Object, dry bool) ([]fsm.Mutation, error) {
	if s.cfg.Admission == nil {
		return nil, nil
	}
	a := admissionAttrs(admission.Update, kind, obj, old, dry)
	a.Subresource = sub
	if err := s.cfg.Admission.Admit(ctx, a); err != nil {
		return nil, admissionError(err)
	}
	muts, err := s.cfg.Admission.Validate(ctx, a)
	return muts, admissionError(err)
}

// DeleteAdmitter is an optional part of Admission: the admission of a
// delete (the admission webhooks that match DELETE).
type DeleteAdmitter interface {
	AdmitDelete(ctx context.Context, a *admission.Attributes) error
}

// admitDelete runs the delete admission on obj, the object deleted.
func (s *APIServer) admitDelete(ctx context.Context, kind *registry.Kind, obj runtime.Object, opts *metav1.DeleteOptions, dry bool) error {
	d, ok := s.cfg.Admission.(DeleteAdmitter)
	if !ok {
		return nil
	}
	a := admissionAttrs(admission.Delete, kind, obj, nil, dry)
	o := opts.DeepCopy()
	o.TypeMeta = metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "DeleteOptions"}
	a.Object, a.OldObject, a.Options = nil, obj, o
	return admissionError(d.AdmitDelete(ctx, a))
}

// StatusWebhooks is an optional part of Admission: the admission webhooks
// of a status update (the built-in plugins do not look at status).
type StatusWebhooks interface {
	StatusWebhooks(ctx context.Context, a *admission.Attributes, mutate bool) error
}

// statusWebhooks runs the mutating (mutate) or validating webhooks that
// match an update of kind's status (or CSR approval) subresource sub.
func (s *APIServer) statusWebhooks(ctx context.Context, kind *registry.Kind, sub string, obj, old runtime.Object, dry, mutate bool) error {
	w, ok := s.cfg.Admission.(StatusWebhooks)
	if !ok {
		return nil
	}
	a := admissionAttrs(admission.Update, kind, obj, old, dry)
	a.Subresource = sub
	return admissionError(w.StatusWebhooks(ctx, a, mutate))
}

// admissionError passes API errors through and makes others a 500.
func admissionError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(apierrors.APIStatus); ok {
		return err
	}
	return storeError(err)
}

// admissionConflict reports whether a proposal failed on one of the
// admission's extra mutations (a quota changed meanwhile: try again).
func admissionConflict(res *fsm.Result, err error) bool {
	return err != nil && res != nil && res.Err != nil && res.Err.Op > 0 && isConflict(err)
}

// warningRecorder sets the admission plugins' warnings (PodSecurity's
// "would violate PodSecurity …") as Warning headers, each message once, as
// kube-apiserver's recorder does; kubectl prints them as "Warning: …".
// Warnings that come after the response started are dropped.
type warningRecorder struct {
	mu   sync.Mutex
	w    *statusRecorder
	seen map[string]bool
}

func (r *warningRecorder) add(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w.wroteHeader || r.seen[msg] {
		return
	}
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	r.seen[msg] = true
	addWarnings(r.w, []string{msg})
}
