package admission

import (
	"context"
	"fmt"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-io/skiff/server/admission/policy"
	"github.com/skiff-io/skiff/server/auth"
)

// RBACResolver answers the escalation check's questions
// (auth.Authorizer).
type RBACResolver interface {
	Authorize(u *auth.User, attrs auth.Attributes) (bool, string)
	RulesFor(u *auth.User, namespace string) []rbacv1.PolicyRule
	RoleRules(namespace string, ref rbacv1.RoleRef) ([]rbacv1.PolicyRule, bool)
}

// WithRBAC enables the RBAC escalation check, as kube-apiserver's RBAC
// storage does: a user may write a Role or ClusterRole only with rules it
// already holds (or the "escalate" verb on it), and a RoleBinding or
// ClusterRoleBinding only to a role whose rules it holds (or with the
// "bind" verb on that role). system:masters and masters are exempt.
func (c *Chain) WithRBAC(r RBACResolver) *Chain {
	c.rbac = r
	c.policies = policy.New(c.reg, r, c.log) // policies' `authorizer` checks
	return c
}

func (c *Chain) rbacEscalation(ctx context.Context, a *Attributes) error {
	if c.rbac == nil || a.Kind.GVK.Group != rbacv1.GroupName {
		return nil
	}
	u, ok := auth.UserFrom(ctx)
	if !ok || u.InGroup(auth.GroupMasters) || u.InGroup(auth.GroupSkiffServers) {
		return nil
	}
	var (
		rules []rbacv1.PolicyRule
		verb  string // the verb that lifts the check
		about auth.Attributes
	)
	switch o := a.Object.(type) {
	case *rbacv1.Role:
		rules, verb = o.Rules, "escalate"
		about = auth.Attributes{Group: rbacv1.GroupName, Resource: "roles", Namespace: a.Namespace, Name: o.Name}
	case *rbacv1.ClusterRole:
		rules, verb = o.Rules, "escalate"
		about = auth.Attributes{Group: rbacv1.GroupName, Resource: "clusterroles", Name: o.Name}
	case *rbacv1.RoleBinding:
		verb = "bind"
		about = auth.Attributes{Group: rbacv1.GroupName, Resource: strings.ToLower(o.RoleRef.Kind) + "s", Name: o.RoleRef.Name}
		if o.RoleRef.Kind == "Role" {
			about.Namespace = a.Namespace
		}
		rules, _ = c.rbac.RoleRules(a.Namespace, o.RoleRef)
	case *rbacv1.ClusterRoleBinding:
		verb = "bind"
		about = auth.Attributes{Group: rbacv1.GroupName, Resource: "clusterroles", Name: o.RoleRef.Name}
		rules, _ = c.rbac.RoleRules("", o.RoleRef)
	default:
		return nil
	}
	about.Verb = verb
	if ok, _ := c.rbac.Authorize(u, about); ok {
		return nil
	}
	missing := auth.Uncovered(c.rbac.RulesFor(u, a.Namespace), rules)
	if len(missing) == 0 {
		return nil
	}
	var b strings.Builder
	for _, m := range missing {
		fmt.Fprintf(&b, "\n%s", ruleString(m))
	}
	return apierrors.NewForbidden(a.Kind.GroupResource(), a.Name, fmt.Errorf(
		"user %q (groups=%q) is attempting to grant RBAC permissions not currently held:%s", u.Name, u.Groups, b.String()))
}

func ruleString(r rbacv1.PolicyRule) string {
	if len(r.NonResourceURLs) > 0 {
		return fmt.Sprintf("{NonResourceURLs:%q, Verbs:%q}", r.NonResourceURLs, r.Verbs)
	}
	s := fmt.Sprintf("{APIGroups:%q, Resources:%q", r.APIGroups, r.Resources)
	if len(r.ResourceNames) > 0 {
		s += fmt.Sprintf(", ResourceNames:%q", r.ResourceNames)
	}
	return s + fmt.Sprintf(", Verbs:%q}", r.Verbs)
}
