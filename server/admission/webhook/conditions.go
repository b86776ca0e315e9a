package webhook

import (
	"context"
	"fmt"
	"strings"
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apiserver/pkg/admission"
	celplugin "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"
)

// conditions compiles and caches webhooks' matchConditions with
// k8s.io/apiserver's CEL matcher, as kube-apiserver does. The `authorizer`
// variable is not offered: a condition that uses it fails to compile, and
// its webhook's failurePolicy decides.
type conditions struct {
	compiler celplugin.ConditionCompiler
	mu       sync.Mutex
	matchers map[string]matchconditions.Matcher
}

func newConditions() *conditions {
	return &conditions{
		compiler: celplugin.NewConditionCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())),
		matchers: map[string]matchconditions.Matcher{},
	}
}

// matcher returns the compiled matcher of a webhook's conditions.
func (c *conditions) matcher(name string, conds []admissionregistrationv1.MatchCondition, fp *admissionregistrationv1.FailurePolicyType, mutating bool) matchconditions.Matcher {
	var key strings.Builder
	key.WriteString(name)
	if fp != nil {
		key.WriteString("\x00" + string(*fp))
	}
	for _, mc := range conds {
		key.WriteString("\x00" + mc.Name + "\x00" + mc.Expression)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.matchers[key.String()]; ok {
		return m
	}
	exprs := make([]celplugin.ExpressionAccessor, len(conds))
	for i, mc := range conds {
		exprs[i] = &matchconditions.MatchCondition{Name: mc.Name, Expression: mc.Expression}
	}
	typ := "validating"
	if mutating {
		typ = "admit"
	}
	m := matchconditions.NewMatcher(c.compiler.CompileCondition(exprs, celplugin.OptionalVariableDeclarations{},
		environment.StoredExpressions), fp, "webhook", typ, name)
	if len(c.matchers) > 1000 {
		clear(c.matchers) // configurations changed many times: start again
	}
	c.matchers[key.String()] = m
	return m
}

// conditionsMatch evaluates the webhook's matchConditions on a: false when
// one is false; an error when one fails to evaluate and failurePolicy is
// Fail (with Ignore the webhook is skipped).
func (d *Dispatcher) conditionsMatch(ctx context.Context, a *Attributes, name string, conds []admissionregistrationv1.MatchCondition, fp *admissionregistrationv1.FailurePolicyType, mutating bool) (bool, error) {
	if len(conds) == 0 {
		return true, nil
	}
	var u user.Info = &user.DefaultInfo{}
	if a.User != nil {
		u = a.User.Info()
	}
	gvr := a.Kind.GVK.GroupVersion().WithResource(a.Kind.Resource)
	attrs := admission.NewAttributesRecord(a.Object, a.OldObject, a.objectGVK(), a.Namespace, a.Name, gvr, a.Subresource,
		admission.Operation(a.Operation), a.Options, a.DryRun, u)
	va := &admission.VersionedAttributes{Attributes: attrs, VersionedKind: a.objectGVK(),
		VersionedObject: admission.NewLazyObject(a.Object), VersionedOldObject: admission.NewLazyObject(a.OldObject)}
	res := d.conditions.matcher(name, conds, fp, mutating).Match(ctx, va, nil, nil)
	if res.Error != nil {
		return false, d.failed(name, fp, fmt.Errorf("failed to evaluate match conditions: %w", res.Error))
	}
	return res.Matches, nil
}
