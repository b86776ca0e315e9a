package registry

import (
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	"k8s.io/apiserver/pkg/cel/environment"
)

// matchConditionCompiler compiles webhooks' matchConditions for
// validation (made once: it is immutable and safe for concurrent use).
var matchConditionCompiler = sync.OnceValue(func() plugincel.Compiler {
	return plugincel.NewCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
})

// Mutating and ValidatingWebhookConfigurations (admissionregistration.k8s.io/v1)
// are stored, defaulted and validated as kube-apiserver does; the admission
// chain calls their webhooks (server/admission/webhook).
func mutatingWebhookConfigurationKind() *Kind {
	return &Kind{
		GVK:       admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingWebhookConfiguration"),
		Resource:  "mutatingwebhookconfigurations",
		newObject: func() runtime.Object { return &admissionregistrationv1.MutatingWebhookConfiguration{} },
		newList:   func() runtime.Object { return &admissionregistrationv1.MutatingWebhookConfigurationList{} },
		defaults: func(obj runtime.Object) {
			c := obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
			for i := range c.Webhooks {
				w := &c.Webhooks[i]
				defaultWebhook(&w.FailurePolicy, &w.MatchPolicy, &w.NamespaceSelector, &w.ObjectSelector, &w.TimeoutSeconds, &w.ClientConfig, w.Rules)
				if w.ReinvocationPolicy == nil {
					p := admissionregistrationv1.NeverReinvocationPolicy
					w.ReinvocationPolicy = &p
				}
			}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			c := obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
			names := sets.New[string]()
			var errs field.ErrorList
			for i, w := range c.Webhooks {
				p := field.NewPath("webhooks").Index(i)
				errs = append(errs, validateWebhook(p, names, w.Name, w.Rules, w.FailurePolicy, w.MatchPolicy, w.SideEffects,
					w.TimeoutSeconds, w.AdmissionReviewVersions, w.ClientConfig, w.NamespaceSelector, w.ObjectSelector)...)
				errs = append(errs, validateMatchConditions(p.Child("matchConditions"), w.MatchConditions)...)
				if r := w.ReinvocationPolicy; r != nil && *r != admissionregistrationv1.NeverReinvocationPolicy && *r != admissionregistrationv1.IfNeededReinvocationPolicy {
					errs = append(errs, field.NotSupported(p.Child("reinvocationPolicy"), *r, []string{"IfNeeded", "Never"}))
				}
			}
			return errs
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Webhooks", "integer", "Webhooks indicates the number of webhooks in the configuration.", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			c := obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
			return []any{c.Name, int64(len(c.Webhooks)), Age(c.CreationTimestamp, now)}
		},
	}
}

func validatingWebhookConfigurationKind() *Kind {
	return &Kind{
		GVK:       admissionregistrationv1.SchemeGroupVersion.WithKind("ValidatingWebhookConfiguration"),
		Resource:  "validatingwebhookconfigurations",
		newObject: func() runtime.Object { return &admissionregistrationv1.ValidatingWebhookConfiguration{} },
		newList:   func() runtime.Object { return &admissionregistrationv1.ValidatingWebhookConfigurationList{} },
		defaults: func(obj runtime.Object) {
			c := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration)
			for i := range c.Webhooks {
				w := &c.Webhooks[i]
				defaultWebhook(&w.FailurePolicy, &w.MatchPolicy, &w.NamespaceSelector, &w.ObjectSelector, &w.TimeoutSeconds, &w.ClientConfig, w.Rules)
			}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			c := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration)
			names := sets.New[string]()
			var errs field.ErrorList
			for i, w := range c.Webhooks {
				p := field.NewPath("webhooks").Index(i)
				errs = append(errs, validateWebhook(p, names, w.Name, w.Rules, w.FailurePolicy, w.MatchPolicy, w.SideEffects,
					w.TimeoutSeconds, w.AdmissionReviewVersions, w.ClientConfig, w.NamespaceSelector, w.ObjectSelector)...)
				errs = append(errs, validateMatchConditions(p.Child("matchConditions"), w.MatchConditions)...)
			}
			return errs
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Webhooks", "integer", "Webhooks indicates the number of webhooks in the configuration.", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			c := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration)
			return []any{c.Name, int64(len(c.Webhooks)), Age(c.CreationTimestamp, now)}
		},
	}
}

// defaultWebhook fills the v1 defaults of kube-apiserver's scheme.
func defaultWebhook(fp **admissionregistrationv1.FailurePolicyType, mp **admissionregistrationv1.MatchPolicyType,
	ns, os **metav1.LabelSelector, timeout **int32, cc *admissionregistrationv1.WebhookClientConfig, rules []admissionregistrationv1.RuleWithOperations) {
	if *fp == nil {
		p := admissionregistrationv1.Fail
		*fp = &p
	}
	if *mp == nil {
		p := admissionregistrationv1.Equivalent
		*mp = &p
	}
	if *ns == nil {
		*ns = &metav1.LabelSelector{}
	}
	if *os == nil {
		*os = &metav1.LabelSelector{}
	}
	if *timeout == nil {
		t := int32(10)
		*timeout = &t
	}
	if s := cc.Service; s != nil && s.Port == nil {
		p := int32(443)
		s.Port = &p
	}
	for i := range rules {
		if rules[i].Scope == nil {
			s := admissionregistrationv1.AllScopes
			rules[i].Scope = &s
		}
	}
}

var supportedOperations = []string{"*", "CREATE", "UPDATE", "DELETE", "CONNECT"}

// validateWebhook holds kube-apiserver's rules for one webhook of either
// kind; names collects the names seen so far (they must be unique).
func validateWebhook(p *field.Path, names sets.Set[string], name string, rules []admissionregistrationv1.RuleWithOperations,
	fp *admissionregistrationv1.FailurePolicyType, mp *admissionregistrationv1.MatchPolicyType, se *admissionregistrationv1.SideEffectClass,
	timeout *int32, versions []string, cc admissionregistrationv1.WebhookClientConfig, ns, os *metav1.LabelSelector) field.ErrorList {
	var errs field.ErrorList
	np := p.Child("name")
	switch {
	case name == "":
		errs = append(errs, field.Required(np, ""))
	case len(strings.Split(name, ".")) < 3:
		errs = append(errs, field.Invalid(np, name, "should be a domain with at least three segments separated by dots"))
	default:
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			errs = append(errs, field.Invalid(np, name, msg))
		}
	}
	if names.Has(name) {
		errs = append(errs, field.Duplicate(np, name))
	}
	names.Insert(name)
	for i, r := range rules {
		errs = append(errs, validateRule(p.Child("rules").Index(i), r)...)
	}
	if fp != nil && *fp != admissionregistrationv1.Fail && *fp != admissionregistrationv1.Ignore {
		errs = append(errs, field.NotSupported(p.Child("failurePolicy"), *fp, []string{"Fail", "Ignore"}))
	}
	if mp != nil && *mp != admissionregistrationv1.Exact && *mp != admissionregistrationv1.Equivalent {
		errs = append(errs, field.NotSupported(p.Child("matchPolicy"), *mp, []string{"Equivalent", "Exact"}))
	}
	sp := p.Child("sideEffects")
	switch {
	case se == nil:
		errs = append(errs, field.Required(sp, "must specify one of None, NoneOnDryRun"))
	case *se != admissionregistrationv1.SideEffectClassNone && *se != admissionregistrationv1.SideEffectClassNoneOnDryRun:
		errs = append(errs, field.NotSupported(sp, *se, []string{"None", "NoneOnDryRun"}))
	}
	if timeout != nil && (*timeout < 1 || *timeout > 30) {
		errs = append(errs, field.Invalid(p.Child("timeoutSeconds"), *timeout, "the timeout value must be between 1 and 30 seconds"))
	}
	vp := p.Child("admissionReviewVersions")
	if len(versions) == 0 {
		errs = append(errs, field.Required(vp, "must specify one of v1, v1beta1"))
	} else {
		seen, ok := sets.New[string](), false
		for i, v := range versions {
			if seen.Has(v) {
				errs = append(errs, field.Invalid(vp.Index(i), v, "duplicate version"))
			}
			seen.Insert(v)
			ok = ok || v == "v1" || v == "v1beta1"
		}
		if !ok {
			errs = append(errs, field.Invalid(vp, versions, "must include at least one of v1, v1beta1"))
		}
	}
	errs = append(errs, validateClientConfig(p.Child("clientConfig"), cc)...)
	opts := metav1validation.LabelSelectorValidationOptions{}
	if ns != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(ns, opts, p.Child("namespaceSelector"))...)
	}
	if os != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(os, opts, p.Child("objectSelector"))...)
	}
	return errs
}

func validateRule(p *field.Path, r admissionregistrationv1.RuleWithOperations) field.ErrorList {
	var errs field.ErrorList
	if len(r.Operations) == 0 {
		errs = append(errs, field.Required(p.Child("operations"), ""))
	}
	for i, op := range r.Operations {
		if !slices.Contains(supportedOperations, string(op)) {
			errs = append(errs, field.NotSupported(p.Child("operations").Index(i), op, supportedOperations))
		}
		if op == admissionregistrationv1.OperationAll && len(r.Operations) > 1 {
			errs = append(errs, field.Invalid(p.Child("operations"), r.Operations, "if '*' is present, must not specify other operations"))
		}
	}
	errs = append(errs, validateRuleList(p.Child("apiGroups"), r.APIGroups, false)...)
	errs = append(errs, validateRuleList(p.Child("apiVersions"), r.APIVersions, true)...)
	rp := p.Child("resources")
	if len(r.Resources) == 0 {
		errs = append(errs, field.Required(rp, ""))
	}
	for i, res := range r.Resources {
		if res == "" {
			errs = append(errs, field.Required(rp.Index(i), ""))
			continue
		}
		if parts := strings.SplitN(res, "/", 2); len(parts) == 2 && (parts[0] == "" || parts[1] == "") {
			errs = append(errs, field.Invalid(rp.Index(i), res, "resource and subresource must not be empty"))
		}
		if (res == "*" || res == "*/*") && len(r.Resources) > 1 {
			errs = append(errs, field.Invalid(rp, r.Resources, "if '"+res+"' is present, must not specify other resources"))
		}
	}
	if s := r.Scope; s != nil && *s != admissionregistrationv1.AllScopes && *s != admissionregistrationv1.ClusterScope && *s != admissionregistrationv1.NamespacedScope {
		errs = append(errs, field.NotSupported(p.Child("scope"), *s, []string{"*", "Cluster", "Namespaced"}))
	}
	return errs
}

func validateRuleList(p *field.Path, list []string, noEmpty bool) field.ErrorList {
	var errs field.ErrorList
	if len(list) == 0 {
		errs = append(errs, field.Required(p, ""))
	}
	for i, v := range list {
		if v == "*" && len(list) > 1 {
			errs = append(errs, field.Invalid(p, list, "if '*' is present, must not specify other "+p.String()))
		}
		if noEmpty && v == "" {
			errs = append(errs, field.Required(p.Index(i), ""))
		}
	}
	return errs
}

// validateClientConfig: exactly one of url and service; a URL is https with
// a host and no user, query or fragment; a service path starts with '/'.
func validateClientConfig(p *field.Path, cc admissionregistrationv1.WebhookClientConfig) field.ErrorList {
	var errs field.ErrorList
	switch {
	case cc.URL == nil && cc.Service == nil:
		errs = append(errs, field.Required(p, "exactly one of url or service is required"))
	case cc.URL != nil && cc.Service != nil:
		errs = append(errs, field.Required(p, "exactly one of url or service is required"))
	case cc.URL != nil:
		up := p.Child("url")
		u, err := url.Parse(*cc.URL)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(up, *cc.URL, "url must be a valid URL: "+err.Error()))
		case u.Scheme != "https":
			errs = append(errs, field.Invalid(up, u.Scheme, "'https' is the only allowed URL scheme"))
		case u.Host == "":
			errs = append(errs, field.Invalid(up, u.Host, "host must be specified"))
		case u.User != nil:
			errs = append(errs, field.Invalid(up, u.User.String(), "user information is not permitted in the URL"))
		case u.Fragment != "" || u.RawQuery != "":
			errs = append(errs, field.Invalid(up, *cc.URL, "fragments and query parameters are not permitted in the URL"))
		}
	default:
		sp := p.Child("service")
		s := cc.Service
		if s.Name == "" {
			errs = append(errs, field.Required(sp.Child("name"), "service name is required"))
		}
		if s.Namespace == "" {
			errs = append(errs, field.Required(sp.Child("namespace"), "service namespace is required"))
		}
		// An empty path is the root, as kube-apiserver's validation has it.
		if s.Path != nil && *s.Path != "" && !strings.HasPrefix(*s.Path, "/") {
			errs = append(errs, field.Invalid(sp.Child("path"), *s.Path, "must start with a '/'"))
		}
		if s.Port != nil && (*s.Port < 1 || *s.Port > 65535) {
			errs = append(errs, field.Invalid(sp.Child("port"), *s.Port, "port is not valid: must be between 1 and 65535"))
		}
	}
	return errs
}

// validateMatchConditions: at most 64, names unique qualified names,
// expressions set and compiling (with kube-apiserver's variables: object,
// oldObject, request, authorizer), as kube-apiserver validates them: "…
// Invalid value: …: compilation failed: ERROR: …".
func validateMatchConditions(p *field.Path, conds []admissionregistrationv1.MatchCondition) field.ErrorList {
	var errs field.ErrorList
	if len(conds) > 64 {
		errs = append(errs, field.TooMany(p, len(conds), 64))
	}
	names := sets.New[string]()
	for i, c := range conds {
		np := p.Index(i).Child("name")
		if c.Name == "" {
			errs = append(errs, field.Required(np, ""))
		} else {
			for _, msg := range validation.IsQualifiedName(c.Name) {
				errs = append(errs, field.Invalid(np, c.Name, msg))
			}
		}
		if names.Has(c.Name) {
			errs = append(errs, field.Duplicate(np, c.Name))
		}
		names.Insert(c.Name)
		ep := p.Index(i).Child("expression")
		if expr := strings.TrimSpace(c.Expression); expr == "" {
			errs = append(errs, field.Required(ep, ""))
		} else {
			res := matchConditionCompiler().CompileCELExpression(&matchconditions.MatchCondition{Name: c.Name, Expression: expr},
				plugincel.OptionalVariableDeclarations{HasAuthorizer: true}, environment.NewExpressions)
			errs = append(errs, celError(ep, expr, res.Error)...)
		}
	}
	return errs
}
