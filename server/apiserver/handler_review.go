package apiserver

import (
	"mime"
	"net/http"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/skiff-io/skiff/server/auth"
)

// RuleResolver lists the rules a user holds in a namespace
// (auth.Authorizer.ResolveRules). An Authorizer that implements it answers
// SelfSubjectRulesReviews; with one that does not, the review is
// incomplete.
type RuleResolver interface {
	ResolveRules(u *auth.User, namespace string) (rules []rbacv1.PolicyRule, incomplete bool, err error)
}

// serveVirtual serves the kinds that are not stored: the access and token
// reviews (create only, answered with the computed status) and
// componentstatuses (handler_componentstatus.go).
func (s *APIServer) serveVirtual(req *request) {
	info := req.info
	if info.Subresource != "" {
		s.writeError(req.w, req.r, notFoundPath())
		return
	}
	if info.Resource == "componentstatuses" {
		s.serveComponentStatuses(req)
		return
	}
	if req.kind.GVK.Group == metricsv1beta1.GroupName {
		s.serveResourceMetrics(req) // handler_resourcemetrics.go
		return
	}
	if info.Verb != "create" || info.Name != "" {
		s.writeError(req.w, req.r, methodNotSupported(req))
		return
	}
	// The reviews have no Table or metadata-only form: a client asking
	// only for one gets 406 (kube-apiserver: "a backend which does not
	// implement metadata").
	if !acceptsPlainObject(req.r) {
		s.writeError(req.w, req.r, notAcceptable(req.r))
		return
	}
	if _, err := dryRun(req.r); err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	obj, warnings, err := s.decode.decodeBody(req.r, body, req.kind.GVK, req.kind.NewObject())
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	addWarnings(req.w, warnings)
	var out runtime.Object
	switch o := obj.(type) {
	case *authorizationv1.SelfSubjectAccessReview:
		out, err = s.selfSubjectAccessReview(req, o)
	case *authorizationv1.SubjectAccessReview:
		out, err = s.subjectAccessReview(o)
	case *authorizationv1.LocalSubjectAccessReview:
		out, err = s.localSubjectAccessReview(req, o)
	case *authorizationv1.SelfSubjectRulesReview:
		out, err = s.selfSubjectRulesReview(req, o)
	case *authenticationv1.TokenReview:
		out, err = s.tokenReview(req, o)
	default:
		err = methodNotSupported(req)
	}
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	out.GetObjectKind().SetGroupVersionKind(req.kind.GVK)
	writeJSON(req.w, http.StatusCreated, out)
}

// acceptsPlainObject reports whether the Accept header allows the plain
// object in JSON (no header, or a JSON or wildcard clause without "as").
func acceptsPlainObject(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	if strings.TrimSpace(accept) == "" {
		return true
	}
	for _, clause := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(clause))
		if err != nil {
			continue
		}
		switch mt {
		case "application/json", "application/*", "*/*":
			if params["as"] == "" {
				return true
			}
		}
	}
	return false
}

// notAcceptable is kube-apiserver's 406 for an Accept header the resource
// cannot answer.
func notAcceptable(r *http.Request) error {
	return apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", schema.GroupResource{}, "",
		"only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf (got "+
			r.Header.Get("Accept")+")", 0, false)
}

func invalidReview(kind string, errs field.ErrorList) error {
	return apierrors.NewInvalid(schema.GroupKind{Group: authorizationv1.GroupName, Kind: kind}, "", errs)
}

// validateReviewAttributes: exactly one of resourceAttributes and
// nonResourceAttributes (kube-apiserver's rule and messages).
func validateReviewAttributes(ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes, p *field.Path) field.ErrorList {
	switch {
	case ra == nil && nra == nil:
		return field.ErrorList{field.Required(p.Child("resourceAttributes"), "exactly one of nonResourceAttributes or resourceAttributes must be specified")}
	case ra != nil && nra != nil:
		return field.ErrorList{field.Invalid(p.Child("nonResourceAttributes"), nra, "cannot be specified in combination with resourceAttributes")}
	}
	return nil
}

// validateEmptyMeta: a review's metadata must be empty (but for the
// namespace of a LocalSubjectAccessReview, when allowNamespace).
func validateEmptyMeta(m metav1.ObjectMeta, allowNamespace bool) field.ErrorList {
	c := m
	c.ManagedFields = nil
	msg := "must be empty"
	if allowNamespace {
		c.Namespace = ""
		msg = "must be empty except for namespace"
	}
	if !apiequality.Semantic.DeepEqual(metav1.ObjectMeta{}, c) {
		return field.ErrorList{field.Invalid(field.NewPath("metadata"), m, msg)}
	}
	return nil
}

// reviewAttributes are the authorization attributes a review asks about.
func reviewAttributes(ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes) auth.Attributes {
	if nra != nil {
		return auth.Attributes{Verb: nra.Verb, Path: nra.Path}
	}
	return auth.Attributes{Verb: ra.Verb, Group: ra.Group, Resource: ra.Resource, Subresource: ra.Subresource,
		Namespace: ra.Namespace, Name: ra.Name}
}

// decide asks the server's authorizer whether u may do what ra or nra
// describe. A denial has no reason, as Kubernetes' RBAC has no opinion on
// what it does not allow.
func (s *APIServer) decide(u *auth.User, ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes) authorizationv1.SubjectAccessReviewStatus {
	if nra != nil && nra.Path == "" {
		// No path names nothing: nothing is allowed.
		return authorizationv1.SubjectAccessReviewStatus{}
	}
	allowed, _ := s.authz.Authorize(u, reviewAttributes(ra, nra))
	return authorizationv1.SubjectAccessReviewStatus{Allowed: allowed}
}

// selfSubjectAccessReview: may the caller (after impersonation) do it.
func (s *APIServer) selfSubjectAccessReview(req *request, r *authorizationv1.SelfSubjectAccessReview) (runtime.Object, error) {
	errs := validateEmptyMeta(r.ObjectMeta, false)
	errs = append(errs, validateReviewAttributes(r.Spec.ResourceAttributes, r.Spec.NonResourceAttributes, field.NewPath("spec"))...)
	if len(errs) > 0 {
		return nil, invalidReview("SelfSubjectAccessReview", errs)
	}
	r.Status = s.decide(req.user, r.Spec.ResourceAttributes, r.Spec.NonResourceAttributes)
	return r, nil
}

func validateSubjectAccessReviewSpec(spec *authorizationv1.SubjectAccessReviewSpec, p *field.Path) field.ErrorList {
	errs := validateReviewAttributes(spec.ResourceAttributes, spec.NonResourceAttributes, p)
	if spec.User == "" && len(spec.Groups) == 0 {
		errs = append(errs, field.Invalid(p.Child("user"), spec.User, "at least one of user or group must be specified"))
	}
	return errs
}

// specUser is the user a SubjectAccessReview asks about: its groups as
// given (system:authenticated is not added, as in kube-apiserver).
func specUser(spec *authorizationv1.SubjectAccessReviewSpec) *auth.User {
	u := &auth.User{Name: spec.User, UID: spec.UID, Groups: slices.Clone(spec.Groups)}
	for k, v := range spec.Extra {
		if u.Extra == nil {
			u.Extra = map[string][]string{}
		}
		u.Extra[k] = slices.Clone(v)
	}
	return u
}

// subjectAccessReview: may spec.user (in spec.groups) do it.
func (s *APIServer) subjectAccessReview(r *authorizationv1.SubjectAccessReview) (runtime.Object, error) {
	errs := validateEmptyMeta(r.ObjectMeta, false)
	errs = append(errs, validateSubjectAccessReviewSpec(&r.Spec, field.NewPath("spec"))...)
	if len(errs) > 0 {
		return nil, invalidReview("SubjectAccessReview", errs)
	}
	r.Status = s.decide(specUser(&r.Spec), r.Spec.ResourceAttributes, r.Spec.NonResourceAttributes)
	return r, nil
}

// localSubjectAccessReview is a SubjectAccessReview inside the URL's
// namespace: resource attributes in that namespace only.
func (s *APIServer) localSubjectAccessReview(req *request, r *authorizationv1.LocalSubjectAccessReview) (runtime.Object, error) {
	ns := req.namespace()
	if r.Namespace == "" {
		r.Namespace = ns
	}
	if r.Namespace != ns {
		return nil, badRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	errs := validateSubjectAccessReviewSpec(&r.Spec, field.NewPath("spec"))
	errs = append(errs, validateEmptyMeta(r.ObjectMeta, true)...)
	if ra := r.Spec.ResourceAttributes; ra != nil && ra.Namespace != r.Namespace {
		errs = append(errs, field.Invalid(field.NewPath("spec", "resourceAttributes", "namespace"), ra.Namespace, "must match metadata.namespace"))
	}
	if r.Spec.NonResourceAttributes != nil {
		errs = append(errs, field.Invalid(field.NewPath("spec", "nonResourceAttributes"), r.Spec.NonResourceAttributes, "disallowed on this kind of request"))
	}
	if len(errs) > 0 {
		return nil, invalidReview("LocalSubjectAccessReview", errs)
	}
	r.Status = s.decide(specUser(&r.Spec), r.Spec.ResourceAttributes, nil)
	return r, nil
}

// selfSubjectRulesReview lists what the caller may do in spec.namespace.
func (s *APIServer) selfSubjectRulesReview(req *request, r *authorizationv1.SelfSubjectRulesReview) (runtime.Object, error) {
	if r.Spec.Namespace == "" {
		return nil, badRequest("no namespace on request")
	}
	resolver, ok := s.authz.(RuleResolver)
	if !ok {
		r.Status = authorizationv1.SubjectRulesReviewStatus{Incomplete: true, EvaluationError: "the authorizer cannot list rules",
			ResourceRules: []authorizationv1.ResourceRule{}, NonResourceRules: []authorizationv1.NonResourceRule{}}
		return r, nil
	}
	rules, incomplete, err := resolver.ResolveRules(req.user, r.Spec.Namespace)
	st := authorizationv1.SubjectRulesReviewStatus{Incomplete: incomplete,
		ResourceRules: []authorizationv1.ResourceRule{}, NonResourceRules: []authorizationv1.NonResourceRule{}}
	if err != nil {
		st.EvaluationError = err.Error()
	}
	for _, rule := range rules {
		if len(rule.NonResourceURLs) > 0 {
			st.NonResourceRules = append(st.NonResourceRules, authorizationv1.NonResourceRule{
				Verbs: slices.Clone(rule.Verbs), NonResourceURLs: slices.Clone(rule.NonResourceURLs)})
			continue
		}
		st.ResourceRules = append(st.ResourceRules, authorizationv1.ResourceRule{Verbs: slices.Clone(rule.Verbs),
			APIGroups: slices.Clone(rule.APIGroups), Resources: slices.Clone(rule.Resources), ResourceNames: slices.Clone(rule.ResourceNames)})
	}
	r.Status = st
	return r, nil
}
