package apiserver_test

import (
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// A ValidatingAdmissionPolicy bound with the Audit action, and its
// auditAnnotations, annotate the request's audit event as kube-apiserver
// does; the request is admitted.
func TestValidatingAdmissionPolicyAuditAnnotations(t *testing.T) {
	e := newAuditEnv(t, apiservertest.Options{Admission: true})
	p := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "no-secrets-in-configmaps"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
				},
			}}},
			Validations:      []admissionregistrationv1.Validation{{Expression: "!has(object.data) || !('password' in object.data)", Message: "no passwords"}},
			AuditAnnotations: []admissionregistrationv1.AuditAnnotation{{Key: "keys", ValueExpression: "string(size(object.data))"}},
		},
	}
	ar := e.cs.AdmissionregistrationV1()
	if _, err := ar.ValidatingAdmissionPolicies().Create(e.ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "audit-only"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: p.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Audit}},
	}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(e.ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Data: map[string]string{"password": "x", "user": "y"}}
	if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("an Audit binding does not refuse: %v", err)
	}
	ev := e.event("configmap create", auditv1.StageResponseComplete, objectIs("create", "configmaps", "", "creds"))
	if got := ev.Annotations["no-secrets-in-configmaps/keys"]; got != "2" {
		t.Errorf("auditAnnotation: %q in %v", got, ev.Annotations)
	}
	failure := ev.Annotations["validation.policy.admission.k8s.io/validation_failure"]
	if !strings.Contains(failure, `"message":"no passwords"`) || !strings.Contains(failure, `"binding":"audit-only"`) {
		t.Errorf("validation_failure: %q in %v", failure, ev.Annotations)
	}
}
