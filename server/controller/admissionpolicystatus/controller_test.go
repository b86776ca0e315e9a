package admissionpolicystatus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/skiff-io/skiff/server/controller/admissionpolicystatus"
	"github.com/skiff-io/skiff/server/controller/controllertest"
)

// A policy whose expression names a field deployments do not have gets a
// type-checking warning in its status; a fixed one gets none.
func TestTypeCheckingStatus(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	c := admissionpolicystatus.New(e.CC)
	e.Start(func(ctx context.Context) { c.Run(ctx, 1) })
	p := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "typo"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "object.spec.replicaz <= 5"}},
		},
	}
	vaps := e.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies()
	p, err := vaps.Create(e.Ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.WaitFor(30*time.Second, "typeChecking warning", func() error {
		got, err := vaps.Get(e.Ctx, "typo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		tc := got.Status.TypeChecking
		if got.Status.ObservedGeneration != got.Generation || tc == nil || len(tc.ExpressionWarnings) != 1 {
			return fmt.Errorf("status %+v", got.Status)
		}
		w := tc.ExpressionWarnings[0]
		if w.FieldRef != "spec.validations[0].expression" || !strings.Contains(w.Warning, "replicaz") || !strings.Contains(w.Warning, "apps/v1, Kind=Deployment") {
			return fmt.Errorf("warning %+v", w)
		}
		t.Logf("warning: %s", w.Warning)
		return nil
	})
	got, err := vaps.Get(e.Ctx, "typo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Spec.Validations[0].Expression = "object.spec.replicas <= 5"
	if _, err := vaps.Update(e.Ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(30*time.Second, "no warning", func() error {
		got, err := vaps.Get(e.Ctx, "typo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.ObservedGeneration != got.Generation || got.Status.TypeChecking == nil || len(got.Status.TypeChecking.ExpressionWarnings) != 0 {
			return fmt.Errorf("status %+v", got.Status)
		}
		return nil
	})
}

// A policy on a custom resource is checked against the CRD's schema, for
// a CRD created after the controller started.
func TestTypeCheckingCustomResource(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	c := admissionpolicystatus.New(e.CC)
	e.Start(func(ctx context.Context) { c.Run(ctx, 1) })
	dyn := dynamic.NewForConfigOrDie(e.API.RESTConfig())
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "gizmos.example.com"},
		"spec": map[string]any{"group": "example.com", "scope": "Namespaced",
			"names": map[string]any{"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
			"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "properties": map[string]any{
					"spec": map[string]any{"type": "object", "properties": map[string]any{"size": map[string]any{"type": "integer"}}}}}}}}},
	}}
	if _, err := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}).
		Create(e.Ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "gizmo"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"example.com"}, APIVersions: []string{"v1"}, Resources: []string{"gizmos"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "object.spec.size > 0"}, {Expression: "object.spec.sise > 0"}},
		},
	}
	vaps := e.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies()
	if _, err := vaps.Create(e.Ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(30*time.Second, "typeChecking warning", func() error {
		got, err := vaps.Get(e.Ctx, "gizmo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		tc := got.Status.TypeChecking
		if tc == nil || len(tc.ExpressionWarnings) != 1 {
			return fmt.Errorf("status %+v", got.Status)
		}
		if w := tc.ExpressionWarnings[0]; w.FieldRef != "spec.validations[1].expression" || !strings.Contains(w.Warning, "example.com/v1, Kind=Gizmo: ERROR") || !strings.Contains(w.Warning, "undefined field 'sise'") {
			return fmt.Errorf("warning %+v", w)
		}
		return nil
	})
}
