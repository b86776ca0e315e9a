package ingress

import (
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type p struct {
	path string
	typ  networkingv1.PathType
	svc  string
}

func ing(name string, age time.Duration, def string, rules map[string][]p) *networkingv1.Ingress {
	in := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
		CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(-age))}}
	if def != "" {
		in.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: def, Port: networkingv1.ServiceBackendPort{Number: 80}}}
	}
	for host, paths := range rules {
		r := networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}
		for _, x := range paths {
			typ := x.typ
			r.HTTP.Paths = append(r.HTTP.Paths, networkingv1.HTTPIngressPath{Path: x.path, PathType: &typ,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: x.svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}})
		}
		in.Spec.Rules = append(in.Spec.Rules, r)
	}
	return in
}

// TestMatch: the Ingress API's precedence, exact host over wildcard over
// no host, Exact over Prefix, longest prefix first, element-wise prefixes,
// the older Ingress on a tie, then the default backend.
func TestMatch(t *testing.T) {
	const (
		exact = networkingv1.PathTypeExact
		pre   = networkingv1.PathTypePrefix
		impl  = networkingv1.PathTypeImplementationSpecific
	)
	tbl := BuildTable([]*networkingv1.Ingress{
		ing("new", time.Hour, "new-default", map[string][]p{
			"a.foo.com": {{"/api", pre, "new-api"}},
			"":          {{"/", pre, "catchall"}},
		}),
		ing("old", 2*time.Hour, "old-default", map[string][]p{
			"a.foo.com": {{"/", pre, "a-root"}, {"/api", pre, "a-api"}, {"/api/v1", pre, "a-v1"}, {"/api", exact, "a-api-exact"}, {"/img/", impl, "a-img"}},
			"*.foo.com": {{"/", pre, "wild"}},
			"b.bar.com": {{"/only", exact, "b-only"}},
		}),
	})
	for _, tc := range []struct{ host, path, want string }{
		{"a.foo.com", "/api", "a-api-exact"},    // Exact over Prefix
		{"a.foo.com", "/api/", "a-api"},         // old wins the tie with new-api
		{"a.foo.com", "/api/v1/x", "a-v1"},      // longest prefix
		{"a.foo.com", "/apix", "a-root"},        // element-wise
		{"A.FOO.COM:8080", "/img", "a-img"},     // case, port, trailing slash of the prefix
		{"a.foo.com", "/img/x.png", "a-img"},    // ImplementationSpecific as Prefix
		{"c.foo.com", "/anything", "wild"},      // wildcard
		{"x.c.foo.com", "/", "catchall"},        // one label only
		{"foo.com", "/", "catchall"},            // not the bare domain
		{"b.bar.com", "/only", "b-only"},        // Exact
		{"b.bar.com", "/only/more", "catchall"}, // no path of the host: the rules without host
		{"other.org", "/x", "catchall"},
	} {
		b, ok := tbl.Match(tc.host, tc.path)
		if !ok || b.Service != tc.want {
			t.Errorf("%s%s: %q %v, want %q", tc.host, tc.path, b.Service, ok, tc.want)
		}
	}
	// No rule: the oldest Ingress's default backend; none: no match.
	tbl = BuildTable([]*networkingv1.Ingress{
		ing("new", time.Hour, "new-default", nil),
		ing("old", 2*time.Hour, "old-default", map[string][]p{"x.com": {{"/", pre, "x"}}}),
	})
	if b, ok := tbl.Match("y.com", "/"); !ok || b.Service != "old-default" {
		t.Errorf("default backend: %q %v", b.Service, ok)
	}
	if _, ok := BuildTable(nil).Match("y.com", "/"); ok {
		t.Error("empty table matched")
	}
}

// TestHostOnly: ports and brackets are dropped only where there is a
// port; names are lower-cased without a trailing dot.
func TestHostOnly(t *testing.T) {
	for in, want := range map[string]string{
		"Web.Example.com": "web.example.com", "web.example.com.:8080": "web.example.com", "[::1]:80": "::1",
		"[::1]": "[::1]", "10.0.0.1": "10.0.0.1", "10.0.0.1:443": "10.0.0.1", "::1": "::1", "": "",
	} {
		if got := hostOnly(in); got != want {
			t.Errorf("hostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMatchAllocs: routing a request allocates nothing (it runs for
// every request the controller serves).
func TestMatchAllocs(t *testing.T) {
	pre := networkingv1.PathTypePrefix
	tbl := BuildTable([]*networkingv1.Ingress{ing("web", time.Hour, "", map[string][]p{
		"web.example.com": {{"/a-rather-long-prefix-of-forty-bytes/v1", pre, "long"}, {"/", pre, "root"}},
	})})
	for _, path := range []string{"/", "/a-rather-long-prefix-of-forty-bytes/v1/x"} {
		if n := testing.AllocsPerRun(100, func() { tbl.Match("web.example.com", path) }); n != 0 {
			t.Errorf("Match(%q) allocates %.0f times per request", path, n)
		}
	}
}
