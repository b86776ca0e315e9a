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

// RulesFor returns the RBAC rules that apply to u in namespace (those of
// ClusterRoleBindings, and of the namespace's RoleBindings when namespace
// is not empty).
func (a *Authorizer) RulesFor(u *User, namespace string) []rbacv1.PolicyRule {
	rules, _ := a.rbacRules(u, namespace)
	return rules
}

// RoleRules returns the rules of the role a binding in namespace refers
// to (a ClusterRole, or a Role of namespace).
func (a *Authorizer) RoleRules(namespace string, ref rbacv1.RoleRef) ([]rbacv1.PolicyRule, bool) {
	if a.rbac == nil {
		return nil, false
	}
	switch ref.Kind {
	case "ClusterRole":
		r, ok := a.rbac.ClusterRole(ref.Name)
		if ok {
			return r.Rules, true
		}
	case "Role":
		r, ok := a.rbac.Role(namespace, ref.Name)
		if ok {
			return r.Rules, true
		}
	}
	return nil, false
}

// Uncovered returns the parts of requested that owner does not grant, as
// Kubernetes' escalation check does: each requested rule is broken into
// single verb/group/resource/name (or verb/URL) rules, and each must be
// allowed by one owner rule. A requested "*" is covered only by an owner
// "*".
func Uncovered(owner, requested []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	var missing []rbacv1.PolicyRule
	for _, r := range requested {
		for _, atom := range breakdown(r) {
			covered := false
			for i := range owner {
				if covers(&owner[i], &atom) {
					covered = true
					break
				}
			}
			if !covered {
				missing = append(missing, atom)
			}
		}
	}
	return missing
}

func breakdown(r rbacv1.PolicyRule) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, v := range r.Verbs {
		if len(r.NonResourceURLs) > 0 {
			for _, u := range r.NonResourceURLs {
				out = append(out, rbacv1.PolicyRule{Verbs: []string{v}, NonResourceURLs: []string{u}})
			}
			continue
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				if len(r.ResourceNames) == 0 {
					out = append(out, rbacv1.PolicyRule{Verbs: []string{v}, APIGroups: []string{g}, Resources: []string{res}})
					continue
				}
				for _, n := range r.ResourceNames {
					out = append(out, rbacv1.PolicyRule{Verbs: []string{v}, APIGroups: []string{g}, Resources: []string{res}, ResourceNames: []string{n}})
				}
			}
		}
	}
	return out
}

// covers: owner allows the single rule atom.
func covers(owner, atom *rbacv1.PolicyRule) bool {
	if !hasOrStar(owner.Verbs, atom.Verbs[0]) {
		return false
	}
	if len(atom.NonResourceURLs) > 0 {
		u := atom.NonResourceURLs[0]
		for _, o := range owner.NonResourceURLs {
			if o == "*" || o == u || (strings.HasSuffix(o, "*") && strings.HasPrefix(u, strings.TrimSuffix(o, "*"))) {
				return true
			}
		}
		return false
	}
	if !hasOrStar(owner.APIGroups, atom.APIGroups[0]) {
		return false
	}
	res, resOK := atom.Resources[0], false
	for _, o := range owner.Resources {
		_, sub, hasSub := strings.Cut(res, "/")
		if o == "*" || o == res || (hasSub && o == "*/"+sub) {
			resOK = true
			break
		}
	}
	if !resOK {
		return false
	}
	if len(owner.ResourceNames) == 0 {
		return true
	}
	return len(atom.ResourceNames) == 1 && hasOrStar(owner.ResourceNames, atom.ResourceNames[0]) && atom.ResourceNames[0] != "*"
}
