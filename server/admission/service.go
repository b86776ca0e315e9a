package admission

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/servicealloc"
)

// SetServiceAllocator replaces the Service cluster IP and node port
// allocator (the default one serves 10.43.0.0/16 and 30000-32767).
func (c *Chain) SetServiceAllocator(a *servicealloc.Allocator) { c.services = a }

// allocateService (mutating) fills in a Service's cluster IP and node
// ports and checks the ones the client asked for (422 when out of range
// or taken). It reads linearizably: a value taken a moment ago through
// another master is seen, and a race that still slips through loses on
// the reservation's create inside Apply.
func (c *Chain) allocateService(ctx context.Context, a *Attributes) error {
	svc, ok := a.Object.(*corev1.Service)
	if !ok || c.services == nil {
		return nil
	}
	old, _ := a.OldObject.(*corev1.Service)
	snap, err := c.reader.Read(ctx, true, 0)
	if err != nil {
		return err
	}
	if errs := c.services.Allocate(snap, svc, old); len(errs) > 0 {
		return apierrors.NewInvalid(a.Kind.GVK.GroupKind(), a.Name, errs)
	}
	return nil
}

// serviceReservations (validating) returns the reservation creates and
// deletes to propose with the Service write.
func (c *Chain) serviceReservations(ctx context.Context, a *Attributes) ([]fsm.Mutation, error) {
	svc, ok := a.Object.(*corev1.Service)
	if !ok || c.services == nil || a.DryRun {
		return nil, nil
	}
	old, _ := a.OldObject.(*corev1.Service)
	snap, err := c.reader.Read(ctx, false, 0)
	if err != nil {
		return nil, err
	}
	muts, err := c.services.Mutations(snap, svc, old)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return muts, nil
}

// Release returns the writes that free what a deleted object held (a
// Service's cluster IP and node ports), to propose with its delete.
func (c *Chain) Release(snap *state.Snapshot, obj runtime.Object) []fsm.Mutation {
	svc, ok := obj.(*corev1.Service)
	if !ok || c.services == nil {
		return nil
	}
	muts, err := c.services.Mutations(snap, nil, svc)
	if err != nil {
		c.log.Error("service reservations not released", "service", svc.Namespace+"/"+svc.Name, "err", err)
		return nil
	}
	return muts
}
