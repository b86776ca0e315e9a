package server

import (
	"context"
	"fmt"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap"

	"github.com/skiff-io/skiff/fsm/state"
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
