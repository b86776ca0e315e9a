package server

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"
	networkingv1 "k8s.io/api/networking/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/server/registry"
	"github.com/skiff-io/skiff/server/servicealloc"
)

// ensureDefaultServiceCIDR keeps the ServiceCIDR `kubernetes` of the
// --service-cidr, with its Ready condition, as kube-apiserver's default
// ServiceCIDR controller does: created when missing (also after a client
// deleted it); a stored one whose CIDRs match and that has no Ready
// condition (or Unknown) gets Ready=True; one whose CIDRs differ, or that
// another component marked not ready, is left alone.
func (s *Server) ensureDefaultServiceCIDR(ctx context.Context, reg *registry.Registry, alloc *servicealloc.Allocator) error {
	kind, _ := reg.Lookup(networkingv1.GroupName, "v1", "servicecidrs")
	key := kind.Key("", registry.DefaultServiceCIDRName)
	cidrs := []string{alloc.CIDR().String()}
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	ready := metav1.Condition{Type: networkingv1.ServiceCIDRConditionReady, Status: metav1.ConditionTrue,
		Message: "Kubernetes default Service CIDR is ready", LastTransitionTime: now}
	cur := s.fsm.Read().Get(key)
	if cur == nil {
		uid := uuid.NewString()
		sc := &networkingv1.ServiceCIDR{
			ObjectMeta: metav1.ObjectMeta{Name: registry.DefaultServiceCIDRName, UID: types.UID(uid), CreationTimestamp: now},
			Spec:       networkingv1.ServiceCIDRSpec{CIDRs: cidrs},
			Status:     networkingv1.ServiceCIDRStatus{Conditions: []metav1.Condition{ready}},
		}
		data, err := kind.Encode(sc)
		if err != nil {
			return err
		}
		res, err := s.applyBatch(ctx, []fsm.Mutation{{Op: fsm.OpCreate, Key: key, UID: uid, Object: data}})
		if err != nil {
			return err
		}
		if res.Err == nil {
			s.log.Info("created the default ServiceCIDR", "cidrs", cidrs)
		} else if res.Err.Reason != fsm.ReasonAlreadyExists {
			return res.Err
		}
		return nil
	}
	obj, err := kind.Decode(cur)
	if err != nil {
		return err
	}
	sc := obj.(*networkingv1.ServiceCIDR)
	if sc.DeletionTimestamp != nil || !slices.Equal(sc.Spec.CIDRs, cidrs) {
		return nil
	}
	if c := apimeta.FindStatusCondition(sc.Status.Conditions, networkingv1.ServiceCIDRConditionReady); c != nil && c.Status != metav1.ConditionUnknown {
		return nil
	}
	apimeta.SetStatusCondition(&sc.Status.Conditions, ready)
	data, err := kind.Encode(sc)
	if err != nil {
		return err
	}
	res, err := s.applyBatch(ctx, []fsm.Mutation{{Op: fsm.OpUpdate, Key: key, Object: data,
		Preconditions: &fsm.Preconditions{UID: cur.UID, ResourceVersion: cur.ModifyIndex}}})
	if err != nil {
		return err
	}
	if res.Err != nil && res.Err.Reason != fsm.ReasonConflict {
		return res.Err // a conflict is settled on the next pass
	}
	return nil
}
