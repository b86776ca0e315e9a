package registry

import (
	"fmt"
	"strings"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap"
)

// API Priority and Fairness (flowcontrol.apiserver.k8s.io/v1): FlowSchemas
// and PriorityLevelConfigurations are stored, defaulted and validated as
// kube-apiserver does, and the leader creates kube-apiserver's bootstrap
// objects. The API server classifies each request by them for the
// X-Kubernetes-PF-* response headers; it does not queue or shed requests
// by priority level (its own in-flight limits apply: docs/api.md).

const (
	flowSchemaMaxMatchingPrecedence = 10000
	maxQueues                       = 10 * 1000 * 1000
)

var (
	fcVerbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "proxy", "update", "watch"}

	mandatoryFlowSchemas    = map[string]*flowcontrolv1.FlowSchema{}
	mandatoryPriorityLevels = map[string]*flowcontrolv1.PriorityLevelConfiguration{}
)

func init() {
	for _, fs := range bootstrap.MandatoryFlowSchemas {
		mandatoryFlowSchemas[fs.Name] = fs
	}
	for _, pl := range bootstrap.MandatoryPriorityLevelConfigurations {
		mandatoryPriorityLevels[pl.Name] = pl
	}
}

func flowSchemaKind() *Kind {
	return &Kind{
		GVK:           flowcontrolv1.SchemeGroupVersion.WithKind("FlowSchema"),
		Resource:      "flowschemas",
		HasStatus:     true,
		HasGeneration: true,
		newObject:     func() runtime.Object { return &flowcontrolv1.FlowSchema{} },
		newList:       func() runtime.Object { return &flowcontrolv1.FlowSchemaList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*flowcontrolv1.FlowSchema).Status = flowcontrolv1.FlowSchemaStatus{}
		},
		defaults: func(obj runtime.Object) {
			if s := &obj.(*flowcontrolv1.FlowSchema).Spec; s.MatchingPrecedence == 0 {
				s.MatchingPrecedence = 1000
			}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			fs := obj.(*flowcontrolv1.FlowSchema)
			sp := field.NewPath("spec")
			errs := validateFlowSchemaSpec(fs.Name, &fs.Spec, sp)
			if mand, ok := mandatoryFlowSchemas[fs.Name]; ok && !apiequality.Semantic.DeepEqual(fs.Spec, mand.Spec) {
				errs = append(errs, field.Invalid(sp, fs.Spec, fmt.Sprintf("spec of '%s' must equal the fixed value", fs.Name)))
			}
			return append(errs, validateFlowSchemaStatus(&fs.Status)...)
		},
		validateStatus: func(obj runtime.Object) field.ErrorList {
			return validateFlowSchemaStatus(&obj.(*flowcontrolv1.FlowSchema).Status)
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("PriorityLevel", "string", flowcontrolv1.PriorityLevelConfigurationReference{}.SwaggerDoc()["name"], 0),
			col("MatchingPrecedence", "string", flowcontrolv1.FlowSchemaSpec{}.SwaggerDoc()["matchingPrecedence"], 0),
			col("DistinguisherMethod", "string", flowcontrolv1.FlowSchemaSpec{}.SwaggerDoc()["distinguisherMethod"], 0),
			ageColumn,
			col("MissingPL", "string", "references a broken or non-existent PriorityLevelConfiguration", 0),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			fs := obj.(*flowcontrolv1.FlowSchema)
			method := "<none>"
			if fs.Spec.DistinguisherMethod != nil {
				method = string(fs.Spec.DistinguisherMethod.Type)
			}
			missing := "?"
			for _, c := range fs.Status.Conditions {
				if c.Type == flowcontrolv1.FlowSchemaConditionDangling {
					missing = string(c.Status)
					break
				}
			}
			return []any{fs.Name, fs.Spec.PriorityLevelConfiguration.Name, int64(fs.Spec.MatchingPrecedence), method,
				Age(fs.CreationTimestamp, now), missing}
		},
	}
}

func validateFlowSchemaSpec(name string, s *flowcontrolv1.FlowSchemaSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	mp := p.Child("matchingPrecedence")
	switch {
	case s.MatchingPrecedence <= 0:
		errs = append(errs, field.Invalid(mp, s.MatchingPrecedence, "must be a positive value"))
	case s.MatchingPrecedence > flowSchemaMaxMatchingPrecedence:
		errs = append(errs, field.Invalid(mp, s.MatchingPrecedence, fmt.Sprintf("must not be greater than %v", flowSchemaMaxMatchingPrecedence)))
	case s.MatchingPrecedence == 1 && name != flowcontrolv1.FlowSchemaNameExempt:
		errs = append(errs, field.Invalid(mp, s.MatchingPrecedence, "only the schema named 'exempt' may have matchingPrecedence 1"))
	}
	methods := []string{string(flowcontrolv1.FlowDistinguisherMethodByNamespaceType), string(flowcontrolv1.FlowDistinguisherMethodByUserType)}
	if d := s.DistinguisherMethod; d != nil && !contains(methods, string(d.Type)) {
		errs = append(errs, field.NotSupported(p.Child("distinguisherMethod", "type"), d, methods))
	}
	plp := p.Child("priorityLevelConfiguration", "name")
	if pl := s.PriorityLevelConfiguration.Name; pl == "" {
		errs = append(errs, field.Required(plp, "must reference a priority level"))
	} else {
		for _, msg := range apivalidation.NameIsDNSSubdomain(pl, false) {
			errs = append(errs, field.Invalid(plp, pl, msg))
		}
	}
	for i := range s.Rules {
		errs = append(errs, validateFlowPolicyRules(&s.Rules[i], p.Child("rules").Index(i))...)
	}
	return errs
}

func validateFlowPolicyRules(r *flowcontrolv1.PolicyRulesWithSubjects, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(r.Subjects) == 0 {
		errs = append(errs, field.Required(p.Child("subjects"), "subjects must contain at least one value"))
	}
	for i := range r.Subjects {
		errs = append(errs, validateFlowSubject(&r.Subjects[i], p.Child("subjects").Index(i))...)
	}
	if len(r.ResourceRules) == 0 && len(r.NonResourceRules) == 0 {
		errs = append(errs, field.Required(p, "at least one of resourceRules and nonResourceRules has to be non-empty"))
	}
	for i, rr := range r.ResourceRules {
		rp := p.Child("resourceRules").Index(i)
		errs = append(errs, validateFlowVerbs(rr.Verbs, rp.Child("verbs"))...)
		if len(rr.APIGroups) == 0 {
			errs = append(errs, field.Required(rp.Child("apiGroups"), "resource rules must supply at least one api group"))
		} else if len(rr.APIGroups) > 1 && contains(rr.APIGroups, "*") {
			errs = append(errs, field.Invalid(rp.Child("apiGroups"), rr.APIGroups, "if '*' is present, must not specify other api groups"))
		}
		if len(rr.Resources) == 0 {
			errs = append(errs, field.Required(rp.Child("resources"), "resource rules must supply at least one resource"))
		} else if len(rr.Resources) > 1 && contains(rr.Resources, "*") {
			errs = append(errs, field.Invalid(rp.Child("resources"), rr.Resources, "if '*' is present, must not specify other resources"))
		}
		switch {
		case len(rr.Namespaces) == 0 && !rr.ClusterScope:
			errs = append(errs, field.Required(rp.Child("namespaces"), "resource rules that are not cluster scoped must supply at least one namespace"))
		case contains(rr.Namespaces, "*"):
			if len(rr.Namespaces) > 1 {
				errs = append(errs, field.Invalid(rp.Child("namespaces"), rr.Namespaces, "if '*' is present, must not specify other namespaces"))
			}
		default:
			for j, ns := range rr.Namespaces {
				for _, msg := range apivalidation.ValidateNamespaceName(ns, false) {
					errs = append(errs, field.Invalid(rp.Child("namespaces").Index(j), ns, "each member of this list must be '*' or a DNS-1123 label; "+msg))
				}
			}
		}
	}
	for i, nr := range r.NonResourceRules {
		np := p.Child("nonResourceRules").Index(i)
		errs = append(errs, validateFlowVerbs(nr.Verbs, np.Child("verbs"))...)
		switch {
		case len(nr.NonResourceURLs) == 0:
			errs = append(errs, field.Required(np.Child("nonResourceURLs"), "nonResourceURLs must contain at least one value"))
		case contains(nr.NonResourceURLs, "*"):
			if len(nr.NonResourceURLs) > 1 {
				errs = append(errs, field.Invalid(np.Child("nonResourceURLs"), nr.NonResourceURLs, "if '*' is present, must not specify other non-resource URLs"))
			}
		default:
			for j, u := range nr.NonResourceURLs {
				if msg := nonResourceURLProblem(u); msg != "" {
					errs = append(errs, field.Invalid(np.Child("nonResourceURLs").Index(j), u, msg))
				}
			}
		}
	}
	return errs
}

func validateFlowVerbs(verbs []string, p *field.Path) field.ErrorList {
	switch {
	case len(verbs) == 0:
		return field.ErrorList{field.Required(p, "verbs must contain at least one value")}
	case contains(verbs, "*"):
		if len(verbs) > 1 {
			return field.ErrorList{field.Invalid(p, verbs, "if '*' is present, must not specify other verbs")}
		}
		return nil
	}
	for _, v := range verbs {
		if !contains(fcVerbs, v) {
			return field.ErrorList{field.NotSupported(p, verbs, fcVerbs)}
		}
	}
	return nil
}

// nonResourceURLProblem says what is wrong with a non-resource URL of a
// rule, or "".
func nonResourceURLProblem(u string) string {
	switch {
	case u == "":
		return "must not be empty"
	case u == "/":
		return ""
	case !strings.HasPrefix(u, "/"):
		return "must start with slash"
	case strings.Contains(u, " "):
		return "must not contain white-space"
	case strings.Contains(u, "//"):
		return "must not contain double slash"
	}
	if n := strings.Count(u, "*"); n > 1 || n == 1 && !strings.HasSuffix(u, "/*") {
		return "wildcard can only do suffix matching"
	}
	return ""
}

func validateFlowSubject(s *flowcontrolv1.Subject, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	forbid := func(set bool, name, msg string) {
		if set {
			errs = append(errs, field.Forbidden(p.Child(name), msg))
		}
	}
	const (
		noUser  = "user is forbidden when subject kind is not 'User'"
		noGroup = "group is forbidden when subject kind is not 'Group'"
		noSA    = "serviceAccount is forbidden when subject kind is not 'ServiceAccount'"
	)
	switch s.Kind {
	case flowcontrolv1.SubjectKindServiceAccount:
		sp := p.Child("serviceAccount")
		if sa := s.ServiceAccount; sa == nil {
			errs = append(errs, field.Required(sp, "serviceAccount is required when subject kind is 'ServiceAccount'"))
		} else {
			if sa.Name == "" {
				errs = append(errs, field.Required(sp.Child("name"), ""))
			} else if sa.Name != flowcontrolv1.NameAll {
				for _, msg := range apivalidation.ValidateServiceAccountName(sa.Name, false) {
					errs = append(errs, field.Invalid(sp.Child("name"), sa.Name, msg))
				}
			}
			if sa.Namespace == "" {
				errs = append(errs, field.Required(sp.Child("namespace"), "must specify namespace for service account"))
			} else {
				for _, msg := range apivalidation.ValidateNamespaceName(sa.Namespace, false) {
					errs = append(errs, field.Invalid(sp.Child("namespace"), sa.Namespace, msg))
				}
			}
		}
		forbid(s.User != nil, "user", noUser)
		forbid(s.Group != nil, "group", noGroup)
	case flowcontrolv1.SubjectKindUser:
		if s.User == nil {
			errs = append(errs, field.Required(p.Child("user"), "user is required when subject kind is 'User'"))
		} else if s.User.Name == "" {
			errs = append(errs, field.Required(p.Child("user", "name"), ""))
		}
		forbid(s.ServiceAccount != nil, "serviceAccount", noSA)
		forbid(s.Group != nil, "group", noGroup)
	case flowcontrolv1.SubjectKindGroup:
		if s.Group == nil {
			errs = append(errs, field.Required(p.Child("group"), "group is required when subject kind is 'Group'"))
		} else if s.Group.Name == "" {
			errs = append(errs, field.Required(p.Child("group", "name"), ""))
		}
		forbid(s.ServiceAccount != nil, "serviceAccount", noSA)
		forbid(s.User != nil, "user", noUser)
	default:
		errs = append(errs, field.NotSupported(p.Child("kind"), s.Kind, []string{string(flowcontrolv1.SubjectKindGroup),
			string(flowcontrolv1.SubjectKindServiceAccount), string(flowcontrolv1.SubjectKindUser)}))
	}
	return errs
}

func validateFlowSchemaStatus(s *flowcontrolv1.FlowSchemaStatus) field.ErrorList {
	var types []string
	for _, c := range s.Conditions {
		types = append(types, string(c.Type))
	}
	return validateConditionTypes(types, field.NewPath("status", "conditions"))
}

func validateConditionTypes(types []string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, t := range types {
		if seen[t] {
			errs = append(errs, field.Duplicate(p.Index(i).Child("type"), t))
		}
		seen[t] = true
		if t == "" {
			errs = append(errs, field.Required(p.Index(i).Child("type"), ""))
		}
	}
	return errs
}
