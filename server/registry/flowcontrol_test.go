package registry

import (
	"testing"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap"
)

// TestFlowControlBootstrapObjects: kube-apiserver's bootstrap objects,
// which the leader stores, are valid and unchanged by defaulting; the
// mandatory ones may not be changed (except the exempt level's
// spec.exempt).
func TestFlowControlBootstrapObjects(t *testing.T) {
	r := New()
	fsKind, _ := r.Lookup(flowcontrolv1.GroupName, "v1", "flowschemas")
	plKind, _ := r.Lookup(flowcontrolv1.GroupName, "v1", "prioritylevelconfigurations")
	for _, f := range append(append([]*flowcontrolv1.FlowSchema(nil), bootstrap.MandatoryFlowSchemas...), bootstrap.SuggestedFlowSchemas...) {
		fs := f.DeepCopy()
		fsKind.Default(fs)
		if !apiequality.Semantic.DeepEqual(fs, f) {
			t.Errorf("defaulting changed flow schema %s", f.Name)
		}
		if errs := fsKind.Validate(fs); len(errs) != 0 {
			t.Errorf("flow schema %s: %v", f.Name, errs)
		}
	}
	for _, p := range append(append([]*flowcontrolv1.PriorityLevelConfiguration(nil), bootstrap.MandatoryPriorityLevelConfigurations...), bootstrap.SuggestedPriorityLevelConfigurations...) {
		pl := p.DeepCopy()
		plKind.Default(pl)
		if !apiequality.Semantic.DeepEqual(pl, p) {
			t.Errorf("defaulting changed priority level %s", p.Name)
		}
		if errs := plKind.Validate(pl); len(errs) != 0 {
			t.Errorf("priority level %s: %v", p.Name, errs)
		}
	}
	fs := bootstrap.MandatoryFlowSchemaCatchAll.DeepCopy()
	fs.Spec.MatchingPrecedence = 9000
	assertFields(t, fsKind.Validate(fs), "spec")
	pl := bootstrap.MandatoryPriorityLevelConfigurationExempt.DeepCopy()
	shares := int32(5)
	pl.Spec.Exempt.NominalConcurrencyShares = &shares
	if errs := plKind.Validate(pl); len(errs) != 0 {
		t.Errorf("exempt level's spec.exempt change: %v", errs)
	}
	pl.Spec.Type = flowcontrolv1.PriorityLevelEnablementLimited
	assertFields(t, plKind.Validate(pl), "spec.type", "spec")
	other := &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: flowcontrolv1.FlowSchemaSpec{MatchingPrecedence: 1}}
	assertFields(t, fsKind.Validate(other), "spec.matchingPrecedence", "spec.priorityLevelConfiguration.name")
}
