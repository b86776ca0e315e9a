package auth

import (
	"errors"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// ErrNodeRulesNotListed is the evaluation error of a rules review for a
// node: the node rules depend on the objects bound to it and cannot be
// listed (as Kubernetes' Node authorizer).
var ErrNodeRulesNotListed = errors.New("node authorizer does not support user rule resolution")

// ResolveRules lists what u may do in namespace as policy rules, for
// SelfSubjectRulesReview: the built-in rules that can be written as
// rules, then RBAC's (a ClusterRoleBinding's anywhere, a RoleBinding's in
// namespace). incomplete is true when a part of the policy (the node
// rules) cannot be listed; err names what could not be evaluated (a
// binding to a missing role, the node rules), as kube-apiserver's rule
// resolvers report it.
func (a *Authorizer) ResolveRules(u *User, namespace string) (rules []rbacv1.PolicyRule, incomplete bool, err error) {
	if u == nil {
		u = &User{Name: UserAnonymous, Groups: []string{GroupUnauthenticated}}
	}
	rbacRules, errs := a.rbacRules(u, namespace)
	var builtin []rbacv1.PolicyRule
	switch {
	case u.InGroup(GroupMasters) || u.InGroup(GroupSkiffServers):
		builtin = append(builtin, rule([]string{"*"}, "*", "*"), urls([]string{"*"}, "*"))
	case u.InGroup(GroupNodes):
		incomplete = true
		errs = append(errs, ErrNodeRulesNotListed)
	}
	if u.InGroup(GroupBootstrappers) {
		builtin = append(builtin, rule([]string{"create", "get", "list", "watch"}, "certificates.k8s.io", "certificatesigningrequests"))
	}
	builtin = append(builtin, urls([]string{"get"}, subPaths(publicPaths)...))
	if u.InGroup(GroupAuthenticated) {
		builtin = append(builtin, urls([]string{"get"}, subPaths(discoveryPaths)...))
	}
	// A built-in rule RBAC already grants is not listed twice.
	rules = append(rules, Uncovered(rbacRules, builtin)...)
	rules = append(rules, rbacRules...)
	return rules, incomplete, errors.Join(errs...)
}

// subPaths lists each root and its sub-paths as non-resource URLs.
func subPaths(roots []string) []string {
	out := make([]string, 0, 2*len(roots))
	for _, r := range roots {
		out = append(out, r, r+"/*")
	}
	return out
}

// rbacRules returns the RBAC rules of u in namespace and an error for
// each binding whose role does not exist.
func (a *Authorizer) rbacRules(u *User, namespace string) ([]rbacv1.PolicyRule, []error) {
	if a.rbac == nil {
		return nil, nil
	}
	var rules []rbacv1.PolicyRule
	var errs []error
	add := func(bindingNamespace string, ref rbacv1.RoleRef) {
		if r, ok := a.RoleRules(bindingNamespace, ref); ok {
			rules = append(rules, r...)
			return
		}
		res := "roles"
		if ref.Kind == "ClusterRole" {
			res = "clusterroles"
		}
		errs = append(errs, fmt.Errorf("binding to %s: %w", ref.Kind, apierrors.NewNotFound(rbacv1.Resource(res), ref.Name)))
	}
	a.rbac.ClusterRoleBindings(func(b *rbacv1.ClusterRoleBinding) bool {
		if b.RoleRef.Kind == "ClusterRole" && subjectsMatch(u, b.Subjects, "") {
			add("", b.RoleRef)
		}
		return true
	})
	if namespace == "" {
		return rules, errs
	}
	a.rbac.RoleBindings(namespace, func(b *rbacv1.RoleBinding) bool {
		if subjectsMatch(u, b.Subjects, b.Namespace) {
			add(b.Namespace, b.RoleRef)
		}
		return true
	})
	return rules, errs
}
