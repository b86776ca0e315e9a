package auth

import (
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeRBAC is an in-memory RBACObjects.
type fakeRBAC struct {
	crs  map[string]*rbacv1.ClusterRole
	rs   map[string]*rbacv1.Role
	crbs []*rbacv1.ClusterRoleBinding
	rbs  []*rbacv1.RoleBinding
}

func (f *fakeRBAC) ClusterRoleBindings(fn func(*rbacv1.ClusterRoleBinding) bool) {
	for _, b := range f.crbs {
		if !fn(b) {
			return
		}
	}
}

func (f *fakeRBAC) RoleBindings(ns string, fn func(*rbacv1.RoleBinding) bool) {
	for _, b := range f.rbs {
		if b.Namespace == ns && !fn(b) {
			return
		}
	}
}

func (f *fakeRBAC) ClusterRole(name string) (*rbacv1.ClusterRole, bool) {
	r, ok := f.crs[name]
	return r, ok
}

func (f *fakeRBAC) Role(ns, name string) (*rbacv1.Role, bool) {
	r, ok := f.rs[ns+"/"+name]
	return r, ok
}

func newDefaultRBAC() *fakeRBAC {
	f := &fakeRBAC{crs: map[string]*rbacv1.ClusterRole{}, rs: map[string]*rbacv1.Role{}}
	for _, r := range DefaultClusterRoles() {
		f.crs[r.Name] = r
	}
	f.crbs = DefaultClusterRoleBindings()
	return f
}

func TestRBAC(t *testing.T) {
	f := newDefaultRBAC()
	f.rs["app/pod-reader"] = &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "pod-reader"}, Rules: []rbacv1.PolicyRule{
		{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}},
		{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"settings"}},
	}}
	subj := func(kind, name, ns string) rbacv1.Subject {
		return rbacv1.Subject{Kind: kind, Name: name, Namespace: ns}
	}
	ref := func(kind, name string) rbacv1.RoleRef {
		return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: name}
	}
	f.rbs = []*rbacv1.RoleBinding{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "alice-reads"}, Subjects: []rbacv1.Subject{subj("User", "alice", "")}, RoleRef: ref("Role", "pod-reader")},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "robot-edits"}, Subjects: []rbacv1.Subject{subj("ServiceAccount", "robot", "")}, RoleRef: ref("ClusterRole", "edit")},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "devs-admin"}, Subjects: []rbacv1.Subject{subj("Group", "devs", "")}, RoleRef: ref("ClusterRole", "admin")},
	}
	f.crbs = append(f.crbs, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "auditors"},
		Subjects: []rbacv1.Subject{subj("ServiceAccount", "auditor", "ops")}, RoleRef: ref("ClusterRole", "view")})
	authz := NewAuthorizer().WithRBAC(f)

	alice := &User{Name: "alice", Groups: []string{GroupAuthenticated}}
	bob := &User{Name: "bob", Groups: []string{"devs", GroupAuthenticated}}
	robot := &User{Name: "system:serviceaccount:app:robot", Groups: []string{GroupServiceAccounts, GroupServiceAccounts + ":app", GroupAuthenticated}}
	otherRobot := &User{Name: "system:serviceaccount:other:robot", Groups: []string{GroupServiceAccounts, GroupAuthenticated}}
	auditor := &User{Name: "system:serviceaccount:ops:auditor", Groups: []string{GroupServiceAccounts, GroupAuthenticated}}
	anon := &User{Name: UserAnonymous, Groups: []string{GroupUnauthenticated}}
	res := func(verb, group, resource, sub, ns, name string) Attributes {
		return Attributes{Verb: verb, Group: group, Resource: resource, Subresource: sub, Namespace: ns, Name: name}
	}
	for _, tt := range []struct {
		name  string
		user  *User
		attrs Attributes
		allow bool
	}{
		{"role: list pods", alice, res("list", "", "pods", "", "app", ""), true},
		{"role: pod logs", alice, res("get", "", "pods", "log", "app", "p"), true},
		{"role: not in another namespace", alice, res("list", "", "pods", "", "other", ""), false},
		{"role: not delete", alice, res("delete", "", "pods", "", "app", "p"), false},
		{"role: not exec", alice, res("create", "", "pods", "exec", "app", "p"), false},
		{"role: named configmap", alice, res("get", "", "configmaps", "", "app", "settings"), true},
		{"role: other configmap", alice, res("get", "", "configmaps", "", "app", "secret-ish"), false},
		{"role: list configmaps with resourceNames", alice, res("list", "", "configmaps", "", "app", ""), false},
		{"edit via rolebinding: create deployment", robot, res("create", "apps", "deployments", "", "app", ""), true},
		{"edit: read secrets", robot, res("get", "", "secrets", "", "app", "s"), true},
		{"edit: no rolebindings", robot, res("create", "rbac.authorization.k8s.io", "rolebindings", "", "app", ""), false},
		{"edit: not cluster-wide", robot, res("list", "", "pods", "", "", ""), false},
		{"same name in another namespace", otherRobot, res("create", "apps", "deployments", "", "app", ""), false},
		{"admin via group: rolebindings", bob, res("create", "rbac.authorization.k8s.io", "rolebindings", "", "app", ""), true},
		{"admin: not nodes", bob, res("list", "", "nodes", "", "", ""), false},
		{"view cluster-wide", auditor, res("list", "apps", "deployments", "", "", ""), true},
		{"view: no secrets", auditor, res("get", "", "secrets", "", "app", "s"), false},
		{"view: no writes", auditor, res("delete", "", "pods", "", "app", "p"), false},
		{"basic-user: selfsubjectreviews", alice, res("create", "authentication.k8s.io", "selfsubjectreviews", "", "", ""), true},
		{"discovery", alice, Attributes{Verb: "get", Path: "/apis/apps/v1"}, true},
		{"anonymous: version", anon, Attributes{Verb: "get", Path: "/version"}, true},
		{"anonymous: no discovery", anon, Attributes{Verb: "get", Path: "/apis"}, false},
		{"anonymous: no pods", anon, res("list", "", "pods", "", "app", ""), false},
		{"masters", &User{Name: "root", Groups: []string{GroupMasters}}, res("delete", "", "nodes", "", "", "n"), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := authz.Authorize(tt.user, tt.attrs)
			if ok != tt.allow {
				t.Fatalf("Authorize = %v (%q), want %v", ok, reason, tt.allow)
			}
			if !ok && !strings.Contains(reason, tt.user.Name) {
				t.Fatalf("denial %q does not name the user", reason)
			}
		})
	}
}

func TestRBACClusterAdminBinding(t *testing.T) {
	f := newDefaultRBAC()
	authz := NewAuthorizer().WithRBAC(f)
	carol := &User{Name: "carol", Groups: []string{GroupAuthenticated}}
	if ok, _ := authz.Authorize(carol, Attributes{Verb: "delete", Resource: "nodes", Name: "n"}); ok {
		t.Fatal("carol allowed before the binding")
	}
	f.crbs = append(f.crbs, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "carol-admin"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "carol"}}, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"}})
	for _, a := range []Attributes{
		{Verb: "delete", Resource: "nodes", Name: "n"},
		{Verb: "create", Group: "apps", Resource: "deployments", Subresource: "scale", Namespace: "x", Name: "d"},
		{Verb: "get", Path: "/debug/pprof/"},
	} {
		if ok, reason := authz.Authorize(carol, a); !ok {
			t.Fatalf("cluster-admin refused %+v: %s", a, reason)
		}
	}
	// A binding to a role that does not exist grants nothing.
	f.crbs = append(f.crbs, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "dave"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "dave"}}, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "missing"}})
	if ok, _ := authz.Authorize(&User{Name: "dave"}, Attributes{Verb: "get", Resource: "pods", Namespace: "x"}); ok {
		t.Fatal("binding to a missing role allowed")
	}
}

func TestUncovered(t *testing.T) {
	r := func(verbs, groups, resources, names []string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{Verbs: verbs, APIGroups: groups, Resources: resources, ResourceNames: names}
	}
	s := func(v ...string) []string { return v }
	owner := []rbacv1.PolicyRule{
		r(s("get", "list"), s(""), s("pods", "*/status"), nil),
		r(s("*"), s("apps"), s("deployments"), nil),
		r(s("get"), s(""), s("secrets"), s("one")),
		{Verbs: s("get"), NonResourceURLs: s("/healthz/*")},
	}
	for _, tt := range []struct {
		name    string
		req     rbacv1.PolicyRule
		missing int
	}{
		{"subset", r(s("get"), s(""), s("pods"), nil), 0},
		{"subresource by */", r(s("list"), s(""), s("pods/status", "services/status"), nil), 0},
		{"all verbs on deployments", r(s("*"), s("apps"), s("deployments"), nil), 0},
		{"more verbs", r(s("get", "delete"), s(""), s("pods"), nil), 1},
		{"wildcard resource", r(s("get"), s(""), s("*"), nil), 1},
		{"named secret", r(s("get"), s(""), s("secrets"), s("one")), 0},
		{"other secret", r(s("get"), s(""), s("secrets"), s("two")), 1},
		{"all secrets", r(s("get"), s(""), s("secrets"), nil), 1},
		{"url prefix", rbacv1.PolicyRule{Verbs: s("get"), NonResourceURLs: s("/healthz/etcd")}, 0},
		{"other url", rbacv1.PolicyRule{Verbs: s("get"), NonResourceURLs: s("/metrics")}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Uncovered(owner, []rbacv1.PolicyRule{tt.req}); len(got) != tt.missing {
				t.Fatalf("missing %v, want %d", got, tt.missing)
			}
		})
	}
	// cluster-admin holds everything; edit is inside admin.
	roles := map[string][]rbacv1.PolicyRule{}
	for _, cr := range DefaultClusterRoles() {
		roles[cr.Name] = cr.Rules
	}
	if m := Uncovered(roles["cluster-admin"], roles["admin"]); len(m) != 0 {
		t.Fatalf("cluster-admin does not cover admin: %v", m)
	}
	if m := Uncovered(roles["admin"], roles["edit"]); len(m) != 0 {
		t.Fatalf("admin does not cover edit: %v", m)
	}
	if m := Uncovered(roles["edit"], roles["admin"]); len(m) == 0 {
		t.Fatal("edit covers admin")
	}
}
