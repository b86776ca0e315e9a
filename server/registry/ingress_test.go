package registry

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestValidateIngress(t *testing.T) {
	prefix, bad := networkingv1.PathTypePrefix, networkingv1.PathType("Regex")
	backend := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
	rule := func(host, path string, pt *networkingv1.PathType, b networkingv1.IngressBackend) networkingv1.IngressRule {
		return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: path, PathType: pt, Backend: b}}}}}
	}
	for _, tc := range []struct {
		name  string
		spec  networkingv1.IngressSpec
		field string // "" valid
	}{
		{"ok", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("a.example.com", "/", &prefix, backend), rule("*.foo.com", "/x", &prefix, backend)}}, ""},
		{"default backend only", networkingv1.IngressSpec{DefaultBackend: &backend}, ""},
		{"empty", networkingv1.IngressSpec{}, "spec"},
		{"ip host", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("10.0.0.1", "/", &prefix, backend)}}, "spec.rules[0].host"},
		{"bad wildcard", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("a.*.com", "/", &prefix, backend)}}, "spec.rules[0].host"},
		{"no path type", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("", "/", nil, backend)}}, "spec.rules[0].http.paths[0].pathType"},
		{"unknown path type", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("", "/", &bad, backend)}}, "spec.rules[0].http.paths[0].pathType"},
		{"relative path", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("", "x", &prefix, backend)}}, "spec.rules[0].http.paths[0].path"},
		{"no port", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("", "/", &prefix,
			networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web"}})}}, "spec.rules[0].http.paths[0].backend.service.port"},
	} {
		k := ingressKind()
		errs := k.validate(&networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "i", Namespace: "d"}, Spec: tc.spec})
		if tc.field == "" {
			if len(errs) != 0 {
				t.Errorf("%s: %v", tc.name, errs)
			}
			continue
		}
		if len(errs) == 0 || errs[0].Field != tc.field {
			t.Errorf("%s: errors %v, want one on %s", tc.name, errs, tc.field)
		}
	}
}
