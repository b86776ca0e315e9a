package policy

import (
	"context"
	"log/slog"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/fsmtest"
	"github.com/skiff-io/skiff/server/registry"
)

// BenchmarkValidate: the cost the evaluator adds to a write (a ConfigMap
// create) with no policy bound, and with one bound policy of one CEL
// validation that matches it.
func BenchmarkValidate(b *testing.B) {
	for _, policies := range []int{0, 1} {
		name := map[int]string{0: "no-policy", 1: "one-policy"}[policies]
		b.Run(name, func(b *testing.B) {
			reg := registry.New()
			log := slog.New(slog.DiscardHandler)
			store := fsmtest.NewFakeRaftStore(fsm.Options{Logger: log})
			create := func(resource, group string, obj runtime.Object) {
				kind, _ := reg.Lookup(group, "v1", resource)
				kind.Default(obj)
				if errs := kind.Validate(obj); len(errs) > 0 {
					b.Fatal(errs)
				}
				data, err := kind.Encode(obj)
				if err != nil {
					b.Fatal(err)
				}
				m := obj.(metav1.Object)
				e, err := fsm.EncodeMutation(fsm.Mutation{Op: fsm.OpCreate, Key: kind.Key(m.GetNamespace(), m.GetName()), UID: resource + "/" + m.GetName(), Object: data})
				if err != nil {
					b.Fatal(err)
				}
				if res, err := store.Apply(context.Background(), e); err != nil || res.Err != nil {
					b.Fatal(err, res)
				}
			}
			create("namespaces", "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}})
			if policies > 0 {
				create("validatingadmissionpolicies", admissionregistrationv1.GroupName, &admissionregistrationv1.ValidatingAdmissionPolicy{
					ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "p"},
					Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
						MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
							RuleWithOperations: admissionregistrationv1.RuleWithOperations{
								Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
								Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
							},
						}}},
						Validations: []admissionregistrationv1.Validation{{Expression: "object.metadata.name.size() < 64"}},
					},
				})
				create("validatingadmissionpolicybindings", admissionregistrationv1.GroupName, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
					ObjectMeta: metav1.ObjectMeta{Name: "p"},
					Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "p",
						ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}},
				})
			}
			ev := New(reg, nil, log)
			snap, err := store.Read(context.Background(), false, 0)
			if err != nil {
				b.Fatal(err)
			}
			kind, _ := reg.Lookup("", "v1", "configmaps")
			a := &Attributes{Operation: admission.Create, Kind: kind, Namespace: "default", Name: "cm",
				Object: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "default"}, Data: map[string]string{"a": "b"}}}
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				if err := ev.Validate(ctx, snap, a, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
