// Package policy enforces the stored ValidatingAdmissionPolicies and their
// bindings (admissionregistration.k8s.io/v1) as kube-apiserver's
// ValidatingAdmissionPolicy plugin does, with that plugin's own parts from
// k8s.io/apiserver: policies are compiled with its CEL compiler
// (compile.go) and each request goes through its validating dispatcher
// (matchConstraints, bindings' matchResources, paramRef, matchConditions,
// validations, auditAnnotations, validationActions Deny/Warn/Audit, the
// denial's reason and message). The plugin's own informer-driven source is
// not used: the policies, bindings, params and namespaces are read from the
// same state snapshot as the rest of the admission chain (listers.go), so
// a policy applies from the write that stored it on.
package policy

import (
	"context"
	"fmt"
	"log/slog"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/policy/generic"
	"k8s.io/apiserver/pkg/admission/plugin/policy/matching"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/warning"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/registry"
)

// Attributes describe the request admitted.
type Attributes struct {
	Operation   admission.Operation
	Kind        *registry.Kind
	Namespace   string
	Name        string
	Subresource string
	Object      runtime.Object
	OldObject   runtime.Object
	DryRun      bool
	User        *auth.User
	// Options is the request's CreateOptions, UpdateOptions or
	// DeleteOptions (may be nil).
	Options runtime.Object
	// ObjectKind is Object's kind when it is not Kind's: a CONNECT's
	// options (PodExecOptions…), the kind kube-apiserver's attributes
	// carry for it.
	ObjectKind schema.GroupVersionKind
}

// Authorizer answers the `authorizer` variable of policies' expressions
// (auth.Authorizer).
type Authorizer interface {
	Authorize(u *auth.User, attrs auth.Attributes) (bool, string)
}

// Evaluator evaluates the policies that match a request.
type Evaluator struct {
	reg   *registry.Registry
	log   *slog.Logger
	authz authorizer.UnconditionalAuthorizer
	objs  admission.ObjectInterfaces
	cache *compileCache
}

// New returns an evaluator over the policies stored as reg's kinds; authz
// may be nil (every `authorizer` check then has no opinion).
func New(reg *registry.Registry, authz Authorizer, log *slog.Logger) *Evaluator {
	if log == nil {
		log = slog.Default()
	}
	return &Evaluator{reg: reg, log: log.With("component", "admission-policy"), authz: authorizerAdapter{authz},
		objs: objectInterfaces{admission.NewObjectInterfacesFromScheme(reg.Scheme()), newEquivalentResources(reg)}, cache: newCompileCache()}
}

// policyResources are never subject to the stored policies, as in
// kube-apiserver, so that a broken policy cannot lock itself in.
var policyResources = map[string]bool{
	"validatingadmissionpolicies": true, "validatingadmissionpolicybindings": true,
	"mutatingadmissionpolicies": true, "mutatingadmissionpolicybindings": true,
}

func exempt(a *Attributes) bool {
	return a.Kind.Virtual || (a.Kind.GVK.Group == admissionregistrationv1.GroupName && policyResources[a.Kind.Resource])
}

// Validate evaluates the policies bound to requests like a on snap: nil,
// or the denial kube-apiserver answers. Warn actions go to warn, audit
// annotations to the request's audit event.
func (e *Evaluator) Validate(ctx context.Context, snap *state.Snapshot, a *Attributes, warn func(string)) error {
	if exempt(a) {
		return nil
	}
	hooks, err := e.hooks(snap)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if len(hooks) == 0 {
		return nil
	}
	var u user.Info = &user.DefaultInfo{}
	if a.User != nil {
		u = a.User.Info()
	}
	gvk := a.Kind.GVK
	gvr := gvk.GroupVersion().WithResource(a.Kind.Resource)
	if !a.ObjectKind.Empty() {
		gvk = a.ObjectKind
	}
	attrs := &auditedAttributes{
		Attributes: admission.NewAttributesRecord(typed(a.Object, gvk), typed(a.OldObject, gvk), gvk, a.Namespace, a.Name, gvr,
			a.Subresource, a.Operation, a.Options, a.DryRun, u),
		ctx: ctx,
	}
	nsKind, _ := e.reg.Lookup("", "v1", "namespaces")
	matcher := matching.NewMatcher(namespaceLister{snap: snap, kind: nsKind}, namespaceClient(snap, nsKind))
	d := validating.NewDispatcher(e.authz, generic.NewPolicyMatcher(matcher))
	ctx = warning.WithWarningRecorder(ctx, warnings(warn))
	return d.Dispatch(ctx, attrs, e.objs, hooks)
}

// typed returns obj with its apiVersion and kind set (the library compares
// them with the matched kind), copied when it has none.
func typed(obj runtime.Object, gvk schema.GroupVersionKind) runtime.Object {
	if obj == nil || obj.GetObjectKind().GroupVersionKind() == gvk {
		return obj
	}
	c := obj.DeepCopyObject()
	c.GetObjectKind().SetGroupVersionKind(gvk)
	return c
}

// hooks pairs each stored policy with its bindings and compiled evaluator.
func (e *Evaluator) hooks(snap *state.Snapshot) ([]validating.PolicyHook, error) {
	bindings, err := list[*admissionregistrationv1.ValidatingAdmissionPolicyBinding](e.reg, snap, "validatingadmissionpolicybindings")
	if err != nil || len(bindings) == 0 {
		return nil, err
	}
	byPolicy := map[string][]*admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	for _, b := range bindings {
		byPolicy[b.Spec.PolicyName] = append(byPolicy[b.Spec.PolicyName], b)
	}
	policies, err := list[*admissionregistrationv1.ValidatingAdmissionPolicy](e.reg, snap, "validatingadmissionpolicies")
	if err != nil {
		return nil, err
	}
	var hooks []validating.PolicyHook
	for _, p := range policies {
		bs := byPolicy[p.Name]
		if len(bs) == 0 {
			continue
		}
		h := validating.PolicyHook{Policy: p, Bindings: bs, Evaluator: e.cache.get(p)}
		if k := p.Spec.ParamKind; k != nil {
			pk, err := e.paramKind(k)
			if err != nil {
				h.ConfigurationError = err
			} else {
				h.ParamInformer = paramInformer{snap: snap, kind: pk}
				h.ParamScope = meta.RESTScopeRoot
				if pk.Namespaced {
					h.ParamScope = meta.RESTScopeNamespace
				}
			}
		}
		hooks = append(hooks, h)
	}
	return hooks, nil
}

// paramKind finds the served kind of a policy's paramKind (a built-in kind
// or a custom resource).
func (e *Evaluator) paramKind(k *admissionregistrationv1.ParamKind) (*registry.Kind, error) {
	gv, err := schema.ParseGroupVersion(k.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("paramKind apiVersion %q: %w", k.APIVersion, err)
	}
	gvk := gv.WithKind(k.Kind)
	for _, kind := range e.reg.Kinds() {
		if kind.GVK == gvk && !kind.Virtual {
			return kind, nil
		}
	}
	return nil, fmt.Errorf("failed to find resource referenced by paramKind: '%v'", gvk)
}

// list decodes every stored object of an admissionregistration resource.
func list[T runtime.Object](reg *registry.Registry, snap *state.Snapshot, resource string) ([]T, error) {
	kind, ok := reg.Lookup(admissionregistrationv1.GroupName, "v1", resource)
	if !ok {
		return nil, nil
	}
	var (
		out  []T
		derr error
	)
	snap.List(kind.StorageResource(), "", "", func(o *state.Object) bool {
		obj, err := kind.Decode(o)
		if err != nil {
			derr = fmt.Errorf("decode %s %s: %w", resource, o.Key.Name, err)
			return false
		}
		out = append(out, obj.(T))
		return true
	})
	return out, derr
}

// auditedAttributes sends the annotations the dispatcher adds (auditAnnotations
// and validation failures of Audit bindings) to the request's audit event.
type auditedAttributes struct {
	admission.Attributes
	ctx context.Context
}

func (a *auditedAttributes) AddAnnotation(key, value string) error {
	audit.AddAuditAnnotation(a.ctx, key, value)
	return a.Attributes.AddAnnotation(key, value)
}

// warnings is a warning.Recorder over the chain's warning sink.
type warnings func(string)

func (w warnings) AddWarning(_, text string) {
	if w != nil {
		w(text)
	}
}

// authorizerAdapter answers the library's authorization checks with
// Skiff's authorizer.
type authorizerAdapter struct{ a Authorizer }

func (x authorizerAdapter) Authorize(_ context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	if x.a == nil {
		return authorizer.DecisionNoOpinion, "no authorizer", nil
	}
	var u *auth.User
	if i := attrs.GetUser(); i != nil {
		u = &auth.User{Name: i.GetName(), UID: i.GetUID(), Groups: i.GetGroups()}
	}
	sa := auth.Attributes{Verb: attrs.GetVerb()}
	if attrs.IsResourceRequest() {
		sa.Group, sa.Resource, sa.Subresource = attrs.GetAPIGroup(), attrs.GetResource(), attrs.GetSubresource()
		sa.Namespace, sa.Name = attrs.GetNamespace(), attrs.GetName()
	} else {
		sa.Path = attrs.GetPath()
	}
	if ok, reason := x.a.Authorize(u, sa); !ok {
		return authorizer.DecisionNoOpinion, reason, nil
	}
	return authorizer.DecisionAllow, "", nil
}
