package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// autoUpdateAnnotation marks the bootstrap objects kube-apiserver keeps.
const autoUpdateAnnotation = "apf.kubernetes.io/autoupdate-spec"

// ensureFlowControlObjects creates kube-apiserver's bootstrap
// PriorityLevelConfigurations and FlowSchemas (the mandatory exempt and
// catch-all ones and the suggested ones) unless they exist; one a client
// deleted comes back at the next leadership change. Skiff classifies
// requests by them but does not enforce their limits (docs/api.md).
func (s *Server) ensureFlowControlObjects(ctx context.Context) error {
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	pls := append(append([]*flowcontrolv1.PriorityLevelConfiguration(nil), bootstrap.MandatoryPriorityLevelConfigurations...),
		bootstrap.SuggestedPriorityLevelConfigurations...)
	for _, p := range pls {
		pl := p.DeepCopy()
		pl.TypeMeta = metav1.TypeMeta{APIVersion: flowcontrolv1.SchemeGroupVersion.String(), Kind: "PriorityLevelConfiguration"}
		pl.Generation = 1
		pl.Annotations = map[string]string{autoUpdateAnnotation: "true"}
		key := state.Key{Resource: flowcontrolv1.GroupName + "/prioritylevelconfigurations", Name: pl.Name}
		if err := s.ensureObject(ctx, key, &pl.ObjectMeta, now, pl); err != nil {
			return fmt.Errorf("priority level %s: %w", pl.Name, err)
		}
	}
	fss := append(append([]*flowcontrolv1.FlowSchema(nil), bootstrap.MandatoryFlowSchemas...), bootstrap.SuggestedFlowSchemas...)
	for _, f := range fss {
		fs := f.DeepCopy()
		fs.TypeMeta = metav1.TypeMeta{APIVersion: flowcontrolv1.SchemeGroupVersion.String(), Kind: "FlowSchema"}
		fs.Generation = 1
		fs.Annotations = map[string]string{autoUpdateAnnotation: "true"}
		key := state.Key{Resource: flowcontrolv1.GroupName + "/flowschemas", Name: fs.Name}
		if err := s.ensureObject(ctx, key, &fs.ObjectMeta, now, fs); err != nil {
			return fmt.Errorf("flow schema %s: %w", fs.Name, err)
		}
	}
	return nil
}

// flowSchemaStatusLoop (leader) keeps each FlowSchema's Dangling condition,
// as kube-apiserver's APF configuration controller does: False (reason
// Found) when its priority level exists, True (NotFound) when not. It
// looks every flowStatusTick until ctx ends.
func (s *Server) flowSchemaStatusLoop(ctx context.Context) {
	log := s.log.With("loop", "flowschema-status")
	reg := registry.New()
	fsKind, _ := reg.Lookup(flowcontrolv1.GroupName, "v1", "flowschemas")
	plKind, _ := reg.Lookup(flowcontrolv1.GroupName, "v1", "prioritylevelconfigurations")
	for {
		if err := s.syncFlowSchemaStatus(ctx, fsKind, plKind); err != nil && ctx.Err() == nil {
			log.Warn("flow schema status", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(flowStatusTick):
		}
	}
}

const flowStatusTick = 2 * time.Second

func (s *Server) syncFlowSchemaStatus(ctx context.Context, fsKind, plKind *registry.Kind) error {
	snap := s.fsm.Read()
	levels := map[string]bool{}
	snap.List(plKind.StorageResource(), "", "", func(o *state.Object) bool {
		levels[o.Key.Name] = true
		return true
	})
	var objs []*state.Object
	snap.List(fsKind.StorageResource(), "", "", func(o *state.Object) bool {
		objs = append(objs, o)
		return true
	})
	var errs []error
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	for _, o := range objs {
		obj, err := fsKind.Decode(o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fs := obj.(*flowcontrolv1.FlowSchema)
		pl := fs.Spec.PriorityLevelConfiguration.Name
		want := flowcontrolv1.FlowSchemaCondition{Type: flowcontrolv1.FlowSchemaConditionDangling, Status: flowcontrolv1.ConditionFalse,
			Reason: "Found", Message: fmt.Sprintf("This FlowSchema references the PriorityLevelConfiguration object named %q and it exists", pl),
			LastTransitionTime: now}
		if !levels[pl] {
			want.Status, want.Reason = flowcontrolv1.ConditionTrue, "NotFound"
			want.Message = fmt.Sprintf("This FlowSchema references the PriorityLevelConfiguration object named %q but there is no such object", pl)
		}
		i := slices.IndexFunc(fs.Status.Conditions, func(c flowcontrolv1.FlowSchemaCondition) bool {
			return c.Type == flowcontrolv1.FlowSchemaConditionDangling
		})
		if i >= 0 {
			if c := fs.Status.Conditions[i]; c.Status == want.Status && c.Reason == want.Reason && c.Message == want.Message {
				continue
			}
			fs.Status.Conditions[i] = want
		} else {
			fs.Status.Conditions = append(fs.Status.Conditions, want)
		}
		data, err := fsKind.Encode(fs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res, err := s.applyBatch(ctx, []fsm.Mutation{{Op: fsm.OpUpdate, Key: o.Key, Object: data,
			Preconditions: &fsm.Preconditions{UID: o.UID, ResourceVersion: o.ModifyIndex}}})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if res.Err != nil && res.Err.Reason != fsm.ReasonConflict && res.Err.Reason != fsm.ReasonNotFound {
			errs = append(errs, res.Err) // a conflict is settled on the next pass
		}
	}
	return errors.Join(errs...)
}
