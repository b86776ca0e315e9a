package registry

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/environment"
)

// ValidatingAdmissionPolicies and their bindings
// (admissionregistration.k8s.io/v1) are stored, defaulted and validated as
// kube-apiserver does, CEL expressions compiled with k8s.io/apiserver's
// compiler; the admission chain enforces them (server/admission/policy).
func validatingAdmissionPolicyKind() *Kind {
	return &Kind{
		GVK:           admissionregistrationv1.SchemeGroupVersion.WithKind("ValidatingAdmissionPolicy"),
		Resource:      "validatingadmissionpolicies",
		Categories:    []string{"api-extensions"},
		HasStatus:     true,
		HasGeneration: true,
		newObject:     func() runtime.Object { return &admissionregistrationv1.ValidatingAdmissionPolicy{} },
		newList:       func() runtime.Object { return &admissionregistrationv1.ValidatingAdmissionPolicyList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*admissionregistrationv1.ValidatingAdmissionPolicy).Status = admissionregistrationv1.ValidatingAdmissionPolicyStatus{}
		},
		defaults: func(obj runtime.Object) {
			p := obj.(*admissionregistrationv1.ValidatingAdmissionPolicy)
			if p.Spec.FailurePolicy == nil {
				fp := admissionregistrationv1.Fail
				p.Spec.FailurePolicy = &fp
			}
			defaultMatchResources(p.Spec.MatchConstraints)
		},
		validate: func(obj runtime.Object) field.ErrorList {
			return validatePolicySpec(&obj.(*admissionregistrationv1.ValidatingAdmissionPolicy).Spec, field.NewPath("spec"))
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Validations", "integer", "Validations indicates the number of validation rules defined in this configuration", 0),
			col("ParamKind", "string", "ParamKind specifies the kind of resources used to parameterize this policy", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			p := obj.(*admissionregistrationv1.ValidatingAdmissionPolicy)
			paramKind := "<unset>"
			if k := p.Spec.ParamKind; k != nil {
				paramKind = k.APIVersion + "/" + k.Kind
			}
			return []any{p.Name, int64(len(p.Spec.Validations)), paramKind, Age(p.CreationTimestamp, now)}
		},
	}
}

func validatingAdmissionPolicyBindingKind() *Kind {
	return &Kind{
		GVK:           admissionregistrationv1.SchemeGroupVersion.WithKind("ValidatingAdmissionPolicyBinding"),
		Resource:      "validatingadmissionpolicybindings",
		Categories:    []string{"api-extensions"},
		HasGeneration: true,
		newObject:     func() runtime.Object { return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{} },
		newList:       func() runtime.Object { return &admissionregistrationv1.ValidatingAdmissionPolicyBindingList{} },
		defaults: func(obj runtime.Object) {
			defaultMatchResources(obj.(*admissionregistrationv1.ValidatingAdmissionPolicyBinding).Spec.MatchResources)
		},
		validate: func(obj runtime.Object) field.ErrorList {
			return validateBindingSpec(&obj.(*admissionregistrationv1.ValidatingAdmissionPolicyBinding).Spec, field.NewPath("spec"))
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("PolicyName", "string", "PolicyName indicates the policy definition which the policy binding binded to", 0),
			col("ParamRef", "string", "ParamRef indicates the param resource which sets the configration param", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			b := obj.(*admissionregistrationv1.ValidatingAdmissionPolicyBinding)
			ref := "<unset>"
			if r := b.Spec.ParamRef; r != nil {
				switch {
				case r.Name != "" && r.Namespace != "":
					ref = r.Namespace + "/" + r.Name
				case r.Name != "":
					ref = "*/" + r.Name
				case r.Selector != nil:
					ref = metav1.FormatLabelSelector(r.Selector)
				}
			}
			return []any{b.Name, b.Spec.PolicyName, ref, Age(b.CreationTimestamp, now)}
		},
	}
}

// defaultMatchResources fills the v1 defaults of kube-apiserver's scheme.
func defaultMatchResources(m *admissionregistrationv1.MatchResources) {
	if m == nil {
		return
	}
	if m.MatchPolicy == nil {
		p := admissionregistrationv1.Equivalent
		m.MatchPolicy = &p
	}
	if m.NamespaceSelector == nil {
		m.NamespaceSelector = &metav1.LabelSelector{}
	}
	if m.ObjectSelector == nil {
		m.ObjectSelector = &metav1.LabelSelector{}
	}
	for _, rules := range [][]admissionregistrationv1.NamedRuleWithOperations{m.ResourceRules, m.ExcludeResourceRules} {
		for i := range rules {
			if rules[i].Scope == nil {
				s := admissionregistrationv1.AllScopes
				rules[i].Scope = &s
			}
		}
	}
}

var supportedReasons = []string{string(metav1.StatusReasonForbidden), string(metav1.StatusReasonInvalid),
	string(metav1.StatusReasonRequestEntityTooLarge), string(metav1.StatusReasonUnauthorized)}

// policyCompiler compiles a policy's expressions with its variables, as
// kube-apiserver's validation does.
type policyCompiler struct {
	c    *plugincel.CompositedCompiler
	opts plugincel.OptionalVariableDeclarations
}

func validatePolicySpec(spec *admissionregistrationv1.ValidatingAdmissionPolicySpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if fp := spec.FailurePolicy; fp != nil && *fp != admissionregistrationv1.Fail && *fp != admissionregistrationv1.Ignore {
		errs = append(errs, field.NotSupported(p.Child("failurePolicy"), *fp, []string{"Fail", "Ignore"}))
	}
	if k := spec.ParamKind; k != nil {
		kp := p.Child("paramKind")
		if k.APIVersion == "" {
			errs = append(errs, field.Required(kp.Child("apiVersion"), ""))
		} else if gv, err := schema.ParseGroupVersion(k.APIVersion); err != nil {
			errs = append(errs, field.Invalid(kp.Child("apiVersion"), k.APIVersion, err.Error()))
		} else if gv.Version == "" {
			errs = append(errs, field.Invalid(kp.Child("apiVersion"), k.APIVersion, "version must be specified"))
		}
		if k.Kind == "" {
			errs = append(errs, field.Required(kp.Child("kind"), ""))
		}
	}
	mp := p.Child("matchConstraints")
	if spec.MatchConstraints == nil {
		errs = append(errs, field.Required(mp, ""))
	} else {
		if len(spec.MatchConstraints.ResourceRules) == 0 {
			errs = append(errs, field.Required(mp.Child("resourceRules"), ""))
		}
		errs = append(errs, validateMatchResources(spec.MatchConstraints, mp)...)
	}
	if len(spec.Validations) == 0 && len(spec.AuditAnnotations) == 0 {
		errs = append(errs, field.Required(p.Child("validations"), "validations or auditAnnotations must contain at least one item"))
	}
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return append(errs, field.InternalError(p, err))
	}
	pc := &policyCompiler{c: compiler, opts: plugincel.OptionalVariableDeclarations{HasParams: spec.ParamKind != nil, HasAuthorizer: true}}
	names := sets.New[string]()
	for i, v := range spec.Variables {
		vp := p.Child("variables").Index(i)
		switch {
		case v.Name == "":
			errs = append(errs, field.Required(vp.Child("name"), "name is not specified"))
		case !isCELIdentifier(v.Name):
			errs = append(errs, field.Invalid(vp.Child("name"), v.Name, "name is not a valid CEL identifier"))
		case names.Has(v.Name):
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		}
		names.Insert(v.Name)
		if strings.TrimSpace(v.Expression) == "" {
			errs = append(errs, field.Required(vp.Child("expression"), "expression is not specified"))
			continue
		}
		res := compiler.CompileAndStoreVariable(&validating.Variable{Name: v.Name, Expression: v.Expression}, pc.opts, environment.NewExpressions)
		errs = append(errs, celError(vp.Child("expression"), v.Expression, res.Error)...)
	}
	for i, v := range spec.Validations {
		vp := p.Child("validations").Index(i)
		if strings.TrimSpace(v.Expression) == "" {
			errs = append(errs, field.Required(vp.Child("expression"), "expression is not specified"))
		} else {
			errs = append(errs, pc.compile(vp.Child("expression"), &validating.ValidationCondition{Expression: v.Expression}, true)...)
		}
		if strings.ContainsAny(v.Message, "\n\r") {
			errs = append(errs, field.Invalid(vp.Child("message"), v.Message, "message must not contain line breaks"))
		}
		if v.MessageExpression != "" {
			errs = append(errs, pc.compile(vp.Child("messageExpression"), &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}, false)...)
		}
		if v.Reason != nil && !slices.Contains(supportedReasons, string(*v.Reason)) {
			errs = append(errs, field.NotSupported(vp.Child("reason"), *v.Reason, supportedReasons))
		}
	}
	keys := sets.New[string]()
	for i, a := range spec.AuditAnnotations {
		ap := p.Child("auditAnnotations").Index(i)
		if a.Key == "" {
			errs = append(errs, field.Required(ap.Child("key"), ""))
		} else {
			for _, msg := range validation.IsQualifiedName("policy.example.com/" + a.Key) {
				errs = append(errs, field.Invalid(ap.Child("key"), a.Key, msg))
			}
		}
		if keys.Has(a.Key) {
			errs = append(errs, field.Duplicate(ap.Child("key"), a.Key))
		}
		keys.Insert(a.Key)
		if strings.TrimSpace(a.ValueExpression) == "" {
			errs = append(errs, field.Required(ap.Child("valueExpression"), "valueExpression is not specified"))
		} else {
			errs = append(errs, pc.compile(ap.Child("valueExpression"), &validating.AuditAnnotationCondition{Key: a.Key, ValueExpression: a.ValueExpression}, true)...)
		}
	}
	cp := p.Child("matchConditions")
	errs = append(errs, validateMatchConditions(cp, spec.MatchConditions)...)
	for i, c := range spec.MatchConditions {
		if strings.TrimSpace(c.Expression) != "" {
			errs = append(errs, pc.compile(cp.Index(i).Child("expression"), &matchconditions.MatchCondition{Name: c.Name, Expression: c.Expression}, true)...)
		}
	}
	return errs
}

// compile compiles one expression; messageExpressions do not see the
// authorizer.
func (pc *policyCompiler) compile(p *field.Path, e plugincel.ExpressionAccessor, withAuthorizer bool) field.ErrorList {
	opts := pc.opts
	opts.HasAuthorizer = withAuthorizer
	return celError(p, e.GetExpression(), pc.c.CompileCELExpression(e, opts, environment.NewExpressions).Error)
}

// celError turns a CEL compilation error into the field error
// kube-apiserver reports.
func celError(p *field.Path, expr string, err *apiservercel.Error) field.ErrorList {
	if err == nil {
		return nil
	}
	switch err.Type {
	case apiservercel.ErrorTypeRequired:
		return field.ErrorList{field.Required(p, err.Detail)}
	case apiservercel.ErrorTypeInvalid:
		return field.ErrorList{field.Invalid(p, expr, err.Detail)}
	}
	return field.ErrorList{field.InternalError(p, errors.New(err.Detail))}
}

func isCELIdentifier(s string) bool {
	for i, r := range s {
		letter := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return s != ""
}

func validateMatchResources(m *admissionregistrationv1.MatchResources, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if mp := m.MatchPolicy; mp != nil && *mp != admissionregistrationv1.Exact && *mp != admissionregistrationv1.Equivalent {
		errs = append(errs, field.NotSupported(p.Child("matchPolicy"), *mp, []string{"Equivalent", "Exact"}))
	}
	opts := metav1validation.LabelSelectorValidationOptions{}
	if m.NamespaceSelector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(m.NamespaceSelector, opts, p.Child("namespaceSelector"))...)
	}
	if m.ObjectSelector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(m.ObjectSelector, opts, p.Child("objectSelector"))...)
	}
	for name, rules := range map[string][]admissionregistrationv1.NamedRuleWithOperations{"resourceRules": m.ResourceRules, "excludeResourceRules": m.ExcludeResourceRules} {
		for i, r := range rules {
			rp := p.Child(name).Index(i)
			errs = append(errs, validateRule(rp, r.RuleWithOperations)...)
			for j, n := range r.ResourceNames {
				for _, msg := range validation.IsDNS1123Subdomain(n) {
					errs = append(errs, field.Invalid(rp.Child("resourceNames").Index(j), n, msg))
				}
			}
		}
	}
	return errs
}

func validateBindingSpec(spec *admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if spec.PolicyName == "" {
		errs = append(errs, field.Required(p.Child("policyName"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(spec.PolicyName) {
			errs = append(errs, field.Invalid(p.Child("policyName"), spec.PolicyName, msg))
		}
	}
	if r := spec.ParamRef; r != nil {
		rp := p.Child("paramRef")
		switch {
		case r.Name != "" && r.Selector != nil:
			errs = append(errs, field.Forbidden(rp.Child("name"), "name and selector are mutually exclusive"))
		case r.Name == "" && r.Selector == nil:
			errs = append(errs, field.Required(rp, "one of name or selector must be specified"))
		}
		if r.Selector != nil {
			errs = append(errs, metav1validation.ValidateLabelSelector(r.Selector, metav1validation.LabelSelectorValidationOptions{}, rp.Child("selector"))...)
		}
		if r.Namespace != "" {
			for _, msg := range validation.IsDNS1123Label(r.Namespace) {
				errs = append(errs, field.Invalid(rp.Child("namespace"), r.Namespace, msg))
			}
		}
		ap := rp.Child("parameterNotFoundAction")
		switch {
		case r.ParameterNotFoundAction == nil:
			errs = append(errs, field.Required(ap, ""))
		case *r.ParameterNotFoundAction != admissionregistrationv1.DenyAction && *r.ParameterNotFoundAction != admissionregistrationv1.AllowAction:
			errs = append(errs, field.NotSupported(ap, *r.ParameterNotFoundAction, []string{"Allow", "Deny"}))
		}
	}
	ap := p.Child("validationActions")
	if len(spec.ValidationActions) == 0 {
		errs = append(errs, field.Required(ap, ""))
	}
	seen := sets.New[admissionregistrationv1.ValidationAction]()
	for i, a := range spec.ValidationActions {
		switch {
		case seen.Has(a):
			errs = append(errs, field.Duplicate(ap.Index(i), a))
		case a != admissionregistrationv1.Deny && a != admissionregistrationv1.Warn && a != admissionregistrationv1.Audit:
			errs = append(errs, field.NotSupported(ap.Index(i), a, []string{"Audit", "Deny", "Warn"}))
		}
		seen.Insert(a)
	}
	if seen.Has(admissionregistrationv1.Deny) && seen.Has(admissionregistrationv1.Warn) {
		errs = append(errs, field.Invalid(ap, spec.ValidationActions, fmt.Sprintf("must not contain both %q and %q", admissionregistrationv1.Deny, admissionregistrationv1.Warn)))
	}
	if spec.MatchResources != nil {
		errs = append(errs, validateMatchResources(spec.MatchResources, p.Child("matchResources"))...)
	}
	return errs
}
