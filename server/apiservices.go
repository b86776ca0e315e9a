package server

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// The local APIServices kube-apiserver registers for itself (its
// autoregister and CRD registration controllers): one per served group
// version, named "<version>.<group>", without spec.service, available at
// once. Built-in ones are labelled automanaged=onstart (made when the
// leader starts; one a client deletes stays deleted until the next
// leadership change), those of custom resources automanaged=true (kept
// while the CRD serves the version, deleted after).
const (
	autoRegisterLabel   = "kube-aggregator.kubernetes.io/automanaged"
	autoRegisterOnStart = "onstart"
	autoRegisterAlways  = "true"
	apiServiceResync    = 30 * time.Second
)

// apiServicePriority holds kube-apiserver's groupPriorityMinimum and
// versionPriority for the group versions Skiff serves.
type apiServicePriority struct{ group, version int32 }

var apiServicePriorities = map[schema.GroupVersion]apiServicePriority{
	{Group: "", Version: "v1"}:                             {18000, 1},
	{Group: "events.k8s.io", Version: "v1"}:                {17750, 15},
	{Group: "authentication.k8s.io", Version: "v1"}:        {17700, 15},
	{Group: "authorization.k8s.io", Version: "v1"}:         {17600, 15},
	{Group: "certificates.k8s.io", Version: "v1"}:          {17300, 15},
	{Group: "rbac.authorization.k8s.io", Version: "v1"}:    {17000, 15},
	{Group: "apiextensions.k8s.io", Version: "v1"}:         {16700, 15},
	{Group: "admissionregistration.k8s.io", Version: "v1"}: {16700, 15},
	{Group: "coordination.k8s.io", Version: "v1"}:          {16500, 15},
	{Group: "discovery.k8s.io", Version: "v1"}:             {16200, 15},
	{Group: "flowcontrol.apiserver.k8s.io", Version: "v1"}: {16100, 21},
	{Group: "apps", Version: "v1"}:                         {17800, 15},
	{Group: "autoscaling", Version: "v1"}:                  {17500, 15},
	{Group: "autoscaling", Version: "v2"}:                  {17500, 30},
	{Group: "batch", Version: "v1"}:                        {17400, 15},
	{Group: "networking.k8s.io", Version: "v1"}:            {17200, 15},
	{Group: "policy", Version: "v1"}:                       {17100, 15},
	{Group: "storage.k8s.io", Version: "v1"}:               {16800, 15},
	{Group: "scheduling.k8s.io", Version: "v1"}:            {16600, 15},
	{Group: "node.k8s.io", Version: "v1"}:                  {16300, 15},
	// Served by metrics-server in Kubernetes, with its manifests' values.
	{Group: "metrics.k8s.io", Version: "v1beta1"}: {100, 100},
}

// localAPIService is the APIService of gv.
func localAPIService(gv schema.GroupVersion, managed string, now metav1.Time) *apiregistrationv1.APIService {
	prio, ok := apiServicePriorities[gv]
	if !ok {
		prio = apiServicePriority{1000, 100} // a CRD's, as kube-apiserver's CRD registration
	}
	return &apiregistrationv1.APIService{
		TypeMeta: metav1.TypeMeta{APIVersion: apiregistrationv1.SchemeGroupVersion.String(), Kind: "APIService"},
		ObjectMeta: metav1.ObjectMeta{Name: gv.Version + "." + gv.Group, CreationTimestamp: now,
			Labels: map[string]string{autoRegisterLabel: managed}},
		Spec: apiregistrationv1.APIServiceSpec{Group: gv.Group, Version: gv.Version,
			GroupPriorityMinimum: prio.group, VersionPriority: prio.version},
		Status: apiregistrationv1.APIServiceStatus{Conditions: []apiregistrationv1.APIServiceCondition{{
			Type: apiregistrationv1.Available, Status: apiregistrationv1.ConditionTrue, LastTransitionTime: now,
			Reason: "Local", Message: "Local APIServices are always available"}}},
	}
}

// apiServiceLoop (leader) keeps the local APIServices: the built-in ones
// once, those of custom resources after every change of the CRD table
// (and every 30 s), until ctx ends.
func (s *Server) apiServiceLoop(ctx context.Context) {
	log := s.log.With("loop", "apiservices")
	reg := registry.New()
	asKind, _ := reg.Lookup(apiregistrationv1.GroupName, "v1", "apiservices")
	crdKind, _ := reg.Lookup(apiextensionsv1.GroupName, "v1", "customresourcedefinitions")
	builtinDone := false
	filter := fsm.WatchFilter{Resource: crdKind.StorageResource()}
	for {
		index := s.fsm.Index()
		if !builtinDone {
			if err := s.ensureBuiltinAPIServices(ctx, reg, asKind); err != nil {
				if ctx.Err() == nil {
					log.Warn("built-in APIServices", "err", err)
				}
			} else {
				builtinDone = true
			}
		}
		if err := s.syncCustomAPIServices(ctx, asKind, crdKind); err != nil && ctx.Err() == nil {
			log.Warn("APIServices of custom resources", "err", err)
		}
		w, err := s.fsm.WatchFiltered(index, filter)
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, apiServiceResync)
			_, err = w.Next(wctx)
			cancel()
			w.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

func (s *Server) ensureBuiltinAPIServices(ctx context.Context, reg *registry.Registry, kind *registry.Kind) error {
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	for _, gv := range reg.GroupVersions() {
		as := localAPIService(gv, autoRegisterOnStart, now)
		if err := s.createAPIService(ctx, kind, as); err != nil {
			return err
		}
	}
	return nil
}

// syncCustomAPIServices creates the APIService of every version a CRD
// serves and deletes the automanaged=true ones no CRD serves any more.
func (s *Server) syncCustomAPIServices(ctx context.Context, asKind, crdKind *registry.Kind) error {
	snap := s.fsm.Read()
	served := map[schema.GroupVersion]bool{}
	var errs []error
	snap.List(crdKind.StorageResource(), "", "", func(o *state.Object) bool {
		obj, err := crdKind.Decode(o)
		if err != nil {
			errs = append(errs, err)
			return true
		}
		crd := obj.(*apiextensionsv1.CustomResourceDefinition)
		if crd.DeletionTimestamp != nil {
			return true
		}
		for _, v := range crd.Spec.Versions {
			if v.Served {
				served[schema.GroupVersion{Group: crd.Spec.Group, Version: v.Name}] = true
			}
		}
		return true
	})
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	for gv := range served {
		if _, builtin := apiServicePriorities[gv]; builtin {
			continue
		}
		if err := s.createAPIService(ctx, asKind, localAPIService(gv, autoRegisterAlways, now)); err != nil {
			errs = append(errs, err)
		}
	}
	var stale []*state.Object
	snap.List(asKind.StorageResource(), "", "", func(o *state.Object) bool {
		obj, err := asKind.Decode(o)
		if err != nil {
			errs = append(errs, err)
			return true
		}
		as := obj.(*apiregistrationv1.APIService)
		gv := schema.GroupVersion{Group: as.Spec.Group, Version: as.Spec.Version}
		if as.Labels[autoRegisterLabel] == autoRegisterAlways && !served[gv] {
			stale = append(stale, o)
		}
		return true
	})
	for _, o := range stale {
		res, err := s.applyBatch(ctx, []fsm.Mutation{{Op: fsm.OpDelete, Key: o.Key,
			Preconditions: &fsm.Preconditions{UID: o.UID, ResourceVersion: o.ModifyIndex}}})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if res.Err == nil {
			s.log.Info("deleted APIService", "name", o.Key.Name)
		}
	}
	return errors.Join(errs...)
}

// createAPIService creates as unless an APIService of its name exists.
func (s *Server) createAPIService(ctx context.Context, kind *registry.Kind, as *apiregistrationv1.APIService) error {
	key := kind.Key("", as.Name)
	if s.fsm.Read().Get(key) != nil {
		return nil
	}
	uid := uuid.NewString()
	as.UID = types.UID(uid)
	data, err := kind.Encode(as)
	if err != nil {
		return err
	}
	res, err := s.applyBatch(ctx, []fsm.Mutation{{Op: fsm.OpCreate, Key: key, UID: uid, Object: data}})
	if err != nil {
		return err
	}
	if res.Err != nil && res.Err.Reason != fsm.ReasonAlreadyExists {
		return res.Err
	}
	return nil
}
