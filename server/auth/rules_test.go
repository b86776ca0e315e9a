package auth

import (
	"errors"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestResolveRules: a rules review lists the RBAC rules of the user's
// bindings in the namespace plus the built-in ones, is incomplete for
// nodes, and names a binding to a missing role.
func TestResolveRules(t *testing.T) {
	f := newDefaultRBAC()
	f.rs["app/pod-reader"] = &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "pod-reader"}, Rules: []rbacv1.PolicyRule{
		{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}},
	}}
	sa := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "robot", Namespace: "app"}
	f.rbs = append(f.rbs,
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "r"}, Subjects: []rbacv1.Subject{sa},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "gone"}, Subjects: []rbacv1.Subject{sa},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "missing"}})
	a := NewAuthorizer().WithRBAC(f)
	robot := &User{Name: ServiceAccountUser("app", "robot"), Groups: []string{GroupServiceAccounts, GroupServiceAccounts + ":app", GroupAuthenticated}}

	has := func(rules []rbacv1.PolicyRule, verb, group, resource, path string) bool {
		for i := range rules {
			attrs := Attributes{Verb: verb, Group: group, Resource: resource, Namespace: "app", Path: path}
			if ruleAllows(&rules[i], attrs) {
				return true
			}
		}
		return false
	}
	rules, incomplete, err := a.ResolveRules(robot, "app")
	if incomplete || err == nil || !strings.Contains(err.Error(), `"missing" not found`) {
		t.Fatalf("robot in app: incomplete %v, err %v", incomplete, err)
	}
	for _, c := range []struct {
		verb, group, resource, path string
		want                        bool
	}{
		{"get", "", "pods", "", true},
		{"list", "", "pods", "", false},
		{"create", "authorization.k8s.io", "selfsubjectaccessreviews", "", true},
		{"get", "", "", "/apis/apps/v1", true},
		{"get", "", "", "/version", true},
		{"get", "", "secrets", "", false},
	} {
		if got := has(rules, c.verb, c.group, c.resource, c.path); got != c.want {
			t.Errorf("robot in app: %s %s %s %s listed %v, want %v", c.verb, c.group, c.resource, c.path, got, c.want)
		}
	}
	// A built-in rule RBAC grants too (/version, as
	// system:public-info-viewer) is not added again.
	count := func(rules []rbacv1.PolicyRule) int {
		n := 0
		for _, r := range rules {
			if slices.Contains(r.NonResourceURLs, "/version") {
				n++
			}
		}
		return n
	}
	if rb, _ := a.rbacRules(robot, "app"); count(rules) != count(rb) {
		t.Errorf("/version listed %d times, RBAC alone %d", count(rules), count(rb))
	}
	// Elsewhere the namespace's bindings do not apply.
	rules, _, err = a.ResolveRules(robot, "other")
	if err != nil || has(rules, "get", "", "pods", "") {
		t.Errorf("robot in other: %v %v", rules, err)
	}
	// An admin holds everything.
	rules, incomplete, err = a.ResolveRules(&User{Name: "admin", Groups: []string{GroupMasters, GroupAuthenticated}}, "app")
	if err != nil || incomplete || !has(rules, "delete", "apps", "deployments", "") || !has(rules, "get", "", "", "/metrics") {
		t.Errorf("admin: %v %v %v", rules, incomplete, err)
	}
	// A node's rules cannot be listed.
	_, incomplete, err = a.ResolveRules(&User{Name: NodeUserPrefix + "n1", Groups: []string{GroupNodes, GroupAuthenticated}}, "app")
	if !incomplete || !errors.Is(err, ErrNodeRulesNotListed) {
		t.Errorf("node: incomplete %v, err %v", incomplete, err)
	}
}
