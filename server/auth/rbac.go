package auth

import (
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
)

// RBACObjects gives the authorizer the stored Roles, ClusterRoles and
// their bindings; the server backs it with its local state. The objects
// are shared and must not be modified.
type RBACObjects interface {
	// ClusterRoleBindings calls fn for every ClusterRoleBinding until fn
	// returns false.
	ClusterRoleBindings(fn func(*rbacv1.ClusterRoleBinding) bool)
	// RoleBindings calls fn for every RoleBinding of namespace until fn
	// returns false.
	RoleBindings(namespace string, fn func(*rbacv1.RoleBinding) bool)
	ClusterRole(name string) (*rbacv1.ClusterRole, bool)
	Role(namespace, name string) (*rbacv1.Role, bool)
}

// WithRBAC makes the authorizer enforce Roles, ClusterRoles and their
// bindings for the users the built-in rules do not already allow.
func (a *Authorizer) WithRBAC(o RBACObjects) *Authorizer {
	a.rbac = o
	return a
}

// authorizeRBAC is Kubernetes' RBAC authorizer: a request is allowed if a
// rule of a role bound to the user allows it — a ClusterRole through a
// ClusterRoleBinding anywhere, a Role or ClusterRole through a RoleBinding
// in the request's namespace. There are no deny rules.
func (a *Authorizer) authorizeRBAC(u *User, attrs Attributes) bool {
	if a.rbac == nil {
		return false
	}
	allowed := false
	a.rbac.ClusterRoleBindings(func(b *rbacv1.ClusterRoleBinding) bool {
		if b.RoleRef.Kind != "ClusterRole" || !subjectsMatch(u, b.Subjects, "") {
			return true
		}
		if r, ok := a.rbac.ClusterRole(b.RoleRef.Name); ok {
			allowed = rulesAllow(r.Rules, attrs)
		}
		return !allowed
	})
	if allowed || attrs.Namespace == "" || attrs.Path != "" {
		return allowed
	}
	a.rbac.RoleBindings(attrs.Namespace, func(b *rbacv1.RoleBinding) bool {
		if !subjectsMatch(u, b.Subjects, b.Namespace) {
			return true
		}
		switch b.RoleRef.Kind {
		case "ClusterRole":
			if r, ok := a.rbac.ClusterRole(b.RoleRef.Name); ok {
				allowed = rulesAllow(r.Rules, attrs)
			}
		case "Role":
			if r, ok := a.rbac.Role(b.Namespace, b.RoleRef.Name); ok {
				allowed = rulesAllow(r.Rules, attrs)
			}
		}
		return !allowed
	})
	return allowed
}

// subjectsMatch reports whether u is one of subjects; a ServiceAccount
// subject without a namespace is in the binding's namespace.
func subjectsMatch(u *User, subjects []rbacv1.Subject, bindingNamespace string) bool {
	for _, s := range subjects {
		switch s.Kind {
		case rbacv1.UserKind:
			if s.Name == u.Name {
				return true
			}
		case rbacv1.GroupKind:
			if u.InGroup(s.Name) {
				return true
			}
		case rbacv1.ServiceAccountKind:
			ns := s.Namespace
			if ns == "" {
				ns = bindingNamespace
			}
			if ns != "" && u.Name == ServiceAccountUser(ns, s.Name) {
				return true
			}
		}
	}
	return false
}

// rulesAllow reports whether one of rules allows attrs.
func rulesAllow(rules []rbacv1.PolicyRule, attrs Attributes) bool {
	for i := range rules {
		if ruleAllows(&rules[i], attrs) {
			return true
		}
	}
	return false
}

func ruleAllows(r *rbacv1.PolicyRule, attrs Attributes) bool {
	if !hasOrStar(r.Verbs, attrs.Verb) {
		return false
	}
	if attrs.Path != "" {
		for _, u := range r.NonResourceURLs {
			if u == rbacv1.NonResourceAll || u == attrs.Path ||
				(strings.HasSuffix(u, "*") && strings.HasPrefix(attrs.Path, strings.TrimSuffix(u, "*"))) {
				return true
			}
		}
		return false
	}
	if !hasOrStar(r.APIGroups, attrs.Group) {
		return false
	}
	resource := attrs.Resource
	if attrs.Subresource != "" {
		resource += "/" + attrs.Subresource
	}
	ok := false
	for _, res := range r.Resources {
		if res == rbacv1.ResourceAll || res == resource ||
			(attrs.Subresource != "" && res == "*/"+attrs.Subresource) {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	if len(r.ResourceNames) == 0 {
		return true
	}
	for _, n := range r.ResourceNames {
		if attrs.Name != "" && n == attrs.Name {
			return true
		}
	}
	return false
}

func hasOrStar(list []string, v string) bool {
	for _, x := range list {
		if x == "*" || x == v {
			return true
		}
	}
	return false
}
