package policy

import (
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	"k8s.io/apiserver/pkg/cel/environment"
)

// compileCache keeps each policy's compiled evaluator until the policy
// changes (by UID and resourceVersion).
type compileCache struct {
	mu  sync.Mutex
	env *environment.EnvSet
	m   map[types.UID]compiled
}

type compiled struct {
	rv string
	v  validating.Validator
}

func newCompileCache() *compileCache {
	return &compileCache{env: environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()), m: map[types.UID]compiled{}}
}

func (c *compileCache) get(p *admissionregistrationv1.ValidatingAdmissionPolicy) validating.Validator {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[p.UID]; ok && e.rv == p.ResourceVersion {
		return e.v
	}
	v := compile(c.env, p)
	if len(c.m) > 1000 {
		clear(c.m) // many policies came and went: start again
	}
	c.m[p.UID] = compiled{rv: p.ResourceVersion, v: v}
	return v
}

// compile builds a policy's validator from k8s.io/apiserver's parts, as
// its ValidatingAdmissionPolicy plugin does: variables compiled first and
// shared by the validations, match conditions, audit annotations and
// message expressions (which do not see the authorizer). Expressions are
// compiled as stored ones, so that a policy stored by an older release
// keeps working.
func compile(env *environment.EnvSet, p *admissionregistrationv1.ValidatingAdmissionPolicy) validating.Validator {
	spec := &p.Spec
	hasParams := spec.ParamKind != nil
	opts := cel.OptionalVariableDeclarations{HasParams: hasParams, HasAuthorizer: true}
	msgOpts := cel.OptionalVariableDeclarations{HasParams: hasParams, HasAuthorizer: false}
	compiler, err := cel.NewCompositedCompiler(env)
	if err != nil {
		return validating.NewValidator(nil, nil, nil, nil, spec.FailurePolicy, err)
	}
	vars := make([]cel.NamedExpressionAccessor, len(spec.Variables))
	for i, v := range spec.Variables {
		vars[i] = &validating.Variable{Name: v.Name, Expression: v.Expression}
	}
	compiler.CompileAndStoreVariables(vars, opts, environment.StoredExpressions)

	var matcher matchconditions.Matcher
	if len(spec.MatchConditions) > 0 {
		conds := make([]cel.ExpressionAccessor, len(spec.MatchConditions))
		for i, mc := range spec.MatchConditions {
			conds[i] = &matchconditions.MatchCondition{Name: mc.Name, Expression: mc.Expression}
		}
		matcher = matchconditions.NewMatcher(compiler.CompileCondition(conds, opts, environment.StoredExpressions),
			spec.FailurePolicy, "policy", "validate", p.Name)
	}
	validations := make([]cel.ExpressionAccessor, len(spec.Validations))
	messages := make([]cel.ExpressionAccessor, len(spec.Validations))
	for i, v := range spec.Validations {
		validations[i] = &validating.ValidationCondition{Expression: v.Expression, Message: v.Message, Reason: v.Reason}
		if v.MessageExpression != "" {
			messages[i] = &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
		}
	}
	annotations := make([]cel.ExpressionAccessor, len(spec.AuditAnnotations))
	for i, a := range spec.AuditAnnotations {
		annotations[i] = &validating.AuditAnnotationCondition{Key: a.Key, ValueExpression: a.ValueExpression}
	}
	return validating.NewValidator(
		compiler.CompileCondition(validations, opts, environment.StoredExpressions),
		matcher,
		compiler.CompileCondition(annotations, opts, environment.StoredExpressions),
		compiler.CompileCondition(messages, msgOpts, environment.StoredExpressions),
		spec.FailurePolicy,
		nil,
	)
}
