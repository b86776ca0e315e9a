package auth

import "testing"

func TestAuthorize(t *testing.T) {
	var (
		anonymous = &User{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}}
		bootstrap = &User{Name: "system:bootstrap:abcdef", Groups: []string{"system:bootstrappers", "system:authenticated"}}
		dev       = &User{Name: "dev", Groups: []string{"system:authenticated"}}
		admin     = &User{Name: "admin", Groups: []string{"system:masters", "system:authenticated"}}
		server    = &User{Name: "skiff-server:m1", Groups: []string{"skiff:servers", "system:authenticated"}}
	)
	get := func(p string) Attributes { return Attributes{Verb: "get", Path: p} }
	createCM := Attributes{Verb: "create", Resource: "configmaps", Namespace: "default"}
	listNodes := Attributes{Verb: "list", Resource: "nodes"}
	tests := []struct {
		name  string
		user  *User
		attrs Attributes
		allow bool
	}{
		{"admin creates", admin, createCM, true},
		{"admin any path", admin, Attributes{Verb: "post", Path: "/internal/join"}, true},
		{"server lists nodes", server, listNodes, true},
		{"server deletes", server, Attributes{Verb: "delete", Group: "apps", Resource: "deployments", Namespace: "x", Name: "y"}, true},

		{"anonymous livez", anonymous, get("/livez"), true},
		{"anonymous livez sub-path", anonymous, get("/livez/ping"), true},
		{"anonymous readyz", anonymous, get("/readyz"), true},
		{"anonymous healthz", anonymous, get("/healthz"), true},
		{"anonymous version", anonymous, get("/version"), true},
		{"anonymous version slash", anonymous, get("/version/"), true},
		{"anonymous cacerts", anonymous, get("/cacerts"), true},
		{"nil user cacerts", nil, get("/cacerts"), true},
		{"anonymous post livez", anonymous, Attributes{Verb: "post", Path: "/livez"}, false},
		{"anonymous lookalike path", anonymous, get("/versions"), false},
		{"anonymous dot-dot escape", anonymous, get("/healthz/../api/v1"), false},
		{"anonymous discovery", anonymous, get("/api"), false},
		{"anonymous openapi", anonymous, get("/openapi/v3"), false},
		{"anonymous resource", anonymous, listNodes, false},
		{"nil user resource", nil, listNodes, false},

		{"dev api", dev, get("/api"), true},
		{"dev api v1", dev, get("/api/v1"), true},
		{"dev apis", dev, get("/apis"), true},
		{"dev apis group", dev, get("/apis/apps/v1"), true},
		{"dev openapi v3", dev, get("/openapi/v3/apis/apps/v1"), true},
		{"dev openapi v2", dev, get("/openapi/v2"), true},
		{"dev healthz", dev, get("/healthz"), true},
		{"dev apisx", dev, get("/apisx"), false},
		{"dev metrics", dev, get("/metrics"), false},
		{"dev resource", dev, listNodes, false},
		{"bootstrap discovery", bootstrap, get("/apis"), true},
		{"bootstrap creates", bootstrap, createCM, false},
	}
	authz := NewAuthorizer()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := authz.Authorize(tt.user, tt.attrs)
			if ok != tt.allow {
				t.Fatalf("Authorize = %v (%q), want %v", ok, reason, tt.allow)
			}
			if ok && reason != "" {
				t.Fatalf("allowed with reason %q", reason)
			}
			if !ok && reason == "" {
				t.Fatal("denied without a reason")
			}
		})
	}
}

func TestDenialReasons(t *testing.T) {
	bootstrap := &User{Name: "system:bootstrap:abcdef", Groups: []string{"system:bootstrappers", "system:authenticated"}}
	tests := []struct {
		attrs Attributes
		want  string
	}{
		{
			Attributes{Verb: "create", Resource: "configmaps", Namespace: "default"},
			`user "system:bootstrap:abcdef" cannot create resource "configmaps" in API group "" in the namespace "default"`,
		},
		{
			Attributes{Verb: "list", Group: "apps", Resource: "deployments"},
			`user "system:bootstrap:abcdef" cannot list resource "deployments" in API group "apps" at the cluster scope`,
		},
		{
			Attributes{Verb: "get", Resource: "pods", Subresource: "log", Namespace: "kube-system", Name: "p"},
			`user "system:bootstrap:abcdef" cannot get resource "pods/log" in API group "" in the namespace "kube-system"`,
		},
		{
			Attributes{Verb: "get", Path: "/metrics"},
			`user "system:bootstrap:abcdef" cannot get path "/metrics"`,
		},
	}
	for _, tt := range tests {
		ok, reason := NewAuthorizer().Authorize(bootstrap, tt.attrs)
		if ok || reason != tt.want {
			t.Errorf("Authorize(%+v) = %v, %q; want false, %q", tt.attrs, ok, reason, tt.want)
		}
	}
	if _, reason := NewAuthorizer().Authorize(nil, Attributes{Verb: "list", Resource: "secrets"}); reason != `user "system:anonymous" cannot list resource "secrets" in API group "" at the cluster scope` {
		t.Errorf("nil user reason = %q", reason)
	}
}
