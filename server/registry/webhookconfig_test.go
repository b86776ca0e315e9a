package registry

import (
	"sort"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestWebhookConfigurationValidation(t *testing.T) {
	reg := New()
	kind, ok := reg.Lookup(admissionregistrationv1.GroupName, "v1", "validatingwebhookconfigurations")
	if !ok {
		t.Fatal("validatingwebhookconfigurations not served")
	}
	url, plain := "https://127.0.0.1:8443/validate", "http://127.0.0.1/x"
	none := admissionregistrationv1.SideEffectClassNone
	good := admissionregistrationv1.ValidatingWebhook{
		Name:                    "a.example.com",
		ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url},
		Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{"CREATE"}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/status"}}}},
		SideEffects:             &none,
		AdmissionReviewVersions: []string{"v1"},
	}
	c := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Webhooks: []admissionregistrationv1.ValidatingWebhook{good}}
	kind.Default(c)
	if errs := kind.Validate(c); len(errs) != 0 {
		t.Fatalf("valid configuration refused: %v", errs)
	}
	if w := c.Webhooks[0]; *w.TimeoutSeconds != 10 || *w.FailurePolicy != admissionregistrationv1.Fail || *w.Rules[0].Scope != admissionregistrationv1.AllScopes {
		t.Fatalf("defaults not applied: %+v", w)
	}
	// A service path may be empty (the root), as the conformance test
	// "should not be able to mutate or prevent deletion of webhook
	// configuration objects" registers it.
	svc := good
	empty := ""
	svc.ClientConfig = admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "ns", Name: "svc", Path: &empty}}
	if errs := kind.Validate(&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Webhooks: []admissionregistrationv1.ValidatingWebhook{svc}}); len(errs) != 0 {
		t.Fatalf("empty service path refused: %v", errs)
	}
	dup := good
	bad := good
	bad.Name = "b.example.com"
	bad.SideEffects = nil
	bad.AdmissionReviewVersions = nil
	bad.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &plain}
	bad.Rules = []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{"PATCH"}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}}}}
	both := good
	both.Name = "c.example.com"
	both.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, Service: &admissionregistrationv1.ServiceReference{Namespace: "ns", Name: "svc"}}
	timeout := int32(31)
	both.TimeoutSeconds = &timeout
	both.MatchConditions = []admissionregistrationv1.MatchCondition{{Name: "a", Expression: "true"}, {Name: "a"}}
	c.Webhooks = []admissionregistrationv1.ValidatingWebhook{good, dup, bad, both}
	var got []string
	for _, e := range kind.Validate(c) {
		got = append(got, e.Field)
	}
	sort.Strings(got)
	want := []string{
		"webhooks[1].name",
		"webhooks[2].admissionReviewVersions",
		"webhooks[2].clientConfig.url",
		"webhooks[2].rules[0].operations[0]",
		"webhooks[2].rules[0].resources",
		"webhooks[2].sideEffects",
		"webhooks[3].clientConfig",
		"webhooks[3].matchConditions[1].expression",
		"webhooks[3].matchConditions[1].name",
		"webhooks[3].timeoutSeconds",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("error fields:\n got %v\nwant %v", got, want)
	}
}

// TestWebhookMatchConditionsCompile: as kube-apiserver, a matchCondition
// that does not compile is refused on create, in both kinds, naming the
// expression ("compilation failed", the upstream conformance tests'
// "should reject … webhook configurations with invalid match conditions");
// the request, object and authorizer variables are known.
func TestWebhookMatchConditionsCompile(t *testing.T) {
	reg := New()
	url := "https://127.0.0.1:8443/x"
	none := admissionregistrationv1.SideEffectClassNone
	good := []admissionregistrationv1.MatchCondition{
		{Name: "not-skipped", Expression: `object.metadata.name != "skip-me"`},
		{Name: "user", Expression: `request.userInfo.username != "" && authorizer.group("").resource("pods").check("get").allowed() || true`},
	}
	bad := []admissionregistrationv1.MatchCondition{{Name: "invalid-expression-1", Expression: "... [] bad expression"}}
	for _, tc := range []struct {
		resource string
		obj      func([]admissionregistrationv1.MatchCondition) runtime.Object
	}{
		{"validatingwebhookconfigurations", func(mc []admissionregistrationv1.MatchCondition) runtime.Object {
			return &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Webhooks: []admissionregistrationv1.ValidatingWebhook{{
				Name: "a.example.com", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url}, SideEffects: &none,
				AdmissionReviewVersions: []string{"v1"}, MatchConditions: mc}}}
		}},
		{"mutatingwebhookconfigurations", func(mc []admissionregistrationv1.MatchCondition) runtime.Object {
			return &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name: "a.example.com", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url}, SideEffects: &none,
				AdmissionReviewVersions: []string{"v1"}, MatchConditions: mc}}}
		}},
	} {
		kind, ok := reg.Lookup(admissionregistrationv1.GroupName, "v1", tc.resource)
		if !ok {
			t.Fatalf("%s not served", tc.resource)
		}
		ok1 := tc.obj(good)
		kind.Default(ok1)
		if errs := kind.Validate(ok1); len(errs) != 0 {
			t.Errorf("%s: valid conditions refused: %v", tc.resource, errs)
		}
		ko := tc.obj(bad)
		kind.Default(ko)
		errs := kind.Validate(ko)
		if len(errs) != 1 || errs[0].Field != "webhooks[0].matchConditions[0].expression" || !strings.Contains(errs[0].Error(), "compilation failed") {
			t.Errorf("%s: invalid condition: %v", tc.resource, errs)
		}
	}
}
