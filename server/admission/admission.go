// Package admission is the admission chain of the Skiff API server: the
// plugins kube-apiserver enables by default that Skiff needs, run on
// creates and updates after defaulting (mutating) and after validation
// (validating):
//   - ServiceAccount: a pod without spec.serviceAccountName gets "default";
//     the account must exist; the token volume is mounted unless
//     automountServiceAccountToken is false (serviceaccount.go).
//   - DefaultTolerationSeconds: pods tolerate node.kubernetes.io/not-ready
//     and node.kubernetes.io/unreachable (NoExecute) for 300 s.
//   - Priority: spec.priority from the pod's PriorityClass (or the
//     globalDefault one); an unknown class is refused (priority.go).
//   - RuntimeClass: a pod's RuntimeClass must exist; its overhead and
//     scheduling constraints are applied to the pod (runtimeclass.go).
//   - LimitRanger: LimitRange defaults for container requests and limits,
//     and the min, max and ratio constraints (403).
//   - Service IP and node port allocation (service.go, server/servicealloc):
//     cluster IPs from the service CIDR and node ports from their range,
//     reserved in the same Raft entry as the Service.
//   - ResourceQuota: a create that would take a quota's usage over its hard
//     limit is refused (403 "exceeded quota: …"); an admitted create
//     charges the quota in the same Raft entry as the object (a status
//     update with the quota's resourceVersion as precondition), so that
//     concurrent creates cannot overshoot it.
//   - NodeRestriction: a kubelet creates and changes only its own Node and
//     Lease, and not the Node's taints or node-restriction.kubernetes.io/
//     labels (noderestriction.go).
//   - RBAC escalation: Roles and bindings may grant only what the writer
//     holds, or has "escalate"/"bind" for (rbac.go).
//   - DefaultIngressClass: a new Ingress naming no class gets the default
//     IngressClass (ingressclass.go).
//   - DefaultStorageClass, StorageObjectInUseProtection and
//     PersistentVolumeClaimResize for claims (storage.go).
//   - PodSecurity: the Pod Security Standards per namespace labels
//     pod-security.kubernetes.io/{enforce,audit,warn}; by default enforce
//     baseline and warn restricted, kube-system exempt (podsecurity.go,
//     with k8s.io/pod-security-admission).
//   - MutatingAdmissionWebhook (first) and ValidatingAdmissionWebhook
//     (last): the webhooks of the stored webhook configurations
//     (server/admission/webhook).
//   - ValidatingAdmissionPolicy (before the validating webhooks): the
//     stored policies and bindings, CEL evaluated by k8s.io/apiserver
//     (server/admission/policy).
//
// NamespaceLifecycle (no new objects in a terminating namespace) lives in
// the API server itself.
package admission

import (
	"context"
	"log/slog"
	"net/http"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apiadmission "k8s.io/apiserver/pkg/admission"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/admission/policy"
	"github.com/skiff-io/skiff/server/admission/webhook"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/registry"
	"github.com/skiff-io/skiff/server/servicealloc"
)

// Operation is what a request does to an object.
type Operation string

const (
	Create Operation = "CREATE"
	Update Operation = "UPDATE"
	Delete Operation = "DELETE"
	// Connect: pods/attach, pods/exec, pods/portforward (the options
	// object is the request's PodAttachOptions, PodExecOptions or
	// PodPortForwardOptions).
	Connect Operation = "CONNECT"
)

// Attributes describe one admission request.
type Attributes struct {
	Operation Operation
	Kind      *registry.Kind
	Namespace string
	Name      string
	// Subresource is set for an update through a subresource
	// (pods/ephemeralcontainers).
	Subresource string
	// Object is the object to store; mutating plugins change it.
	Object runtime.Object
	// OldObject is the stored object (updates).
	OldObject runtime.Object
	DryRun    bool
	// Options is the request's DeleteOptions (deletes only).
	Options runtime.Object
	// ObjectKind is Object's kind when it is not Kind's (CONNECT).
	ObjectKind schema.GroupVersionKind
}

// Reader reads the local state (admission decisions are made on it, and
// writes that depend on them carry preconditions).
type Reader interface {
	Read(ctx context.Context, linearizable bool, minIndex uint64) (*state.Snapshot, error)
}

// Chain runs the plugins.
type Chain struct {
	reader   Reader
	reg      *registry.Registry
	log      *slog.Logger
	services *servicealloc.Allocator
	// rbac enables the RBAC escalation check (rbac.go).
	rbac RBACResolver
	// podSecurity is the PodSecurity plugin (podsecurity.go).
	podSecurity *podSecurity
	// webhooks calls the admission webhooks.
	webhooks *webhook.Dispatcher
	// policies evaluates the ValidatingAdmissionPolicies.
	policies *policy.Evaluator
}

// New returns the admission chain over the state read by r.
func New(r Reader, reg *registry.Registry, log *slog.Logger) *Chain {
	if log == nil {
		log = slog.Default()
	}
	services, err := servicealloc.New(servicealloc.DefaultServiceCIDR, "")
	if err != nil {
		panic(err) // the defaults are valid
	}
	c := &Chain{reader: r, reg: reg, log: log.With("component", "admission"), services: services,
		webhooks: webhook.New(reg, log), policies: policy.New(reg, nil, log)}
	if c.podSecurity, err = c.newPodSecurity(DefaultPodSecurityConfig()); err != nil {
		panic(err) // the defaults are valid
	}
	return c
}

// Admit runs the mutating plugins on a create or update.
func (c *Chain) Admit(ctx context.Context, a *Attributes) error {
	if err := c.callWebhooks(ctx, a, true); err != nil {
		return err
	}
	if err := c.rbacEscalation(ctx, a); err != nil {
		return err
	}
	u, _ := auth.UserFrom(ctx)
	if err := nodeRestriction(u, a); err != nil {
		return err
	}
	if err := certificateRequest(u, a); err != nil {
		return err
	}
	if a.Kind.Resource == "services" && a.Kind.GVK.Group == "" {
		return c.allocateService(ctx, a)
	}
	if a.Kind.Resource == "ingresses" && a.Operation == Create {
		snap, err := c.reader.Read(ctx, false, 0)
		if err != nil {
			return err
		}
		return c.defaultIngressClass(snap, a)
	}
	if a.Kind.Resource == "persistentvolumeclaims" && a.Kind.GVK.Group == "" {
		return c.admitClaim(ctx, a) // storage.go
	}
	if a.Kind.Resource != "pods" || a.Operation != Create {
		return nil
	}
	defaultServiceAccount(a)
	defaultTolerations(a)
	snap, err := c.reader.Read(ctx, false, 0)
	if err != nil {
		return err
	}
	if err := c.serviceAccount(ctx, snap, a); err != nil {
		return err
	}
	if err := c.priority(snap, a); err != nil {
		return err
	}
	if err := c.runtimeClass(snap, a); err != nil {
		return err
	}
	return c.limitRanger(snap, a)
}

// Validate runs the validating plugins; the mutations it returns (quota
// charges) must be proposed atomically with the object's write.
func (c *Chain) Validate(ctx context.Context, a *Attributes) ([]fsm.Mutation, error) {
	if err := c.callPolicies(ctx, a); err != nil {
		return nil, err
	}
	if err := c.callWebhooks(ctx, a, false); err != nil {
		return nil, err
	}
	if err := c.checkPodSecurity(ctx, a); err != nil {
		return nil, err
	}
	if err := c.validateClaimResize(ctx, a); err != nil {
		return nil, err
	}
	var reservations []fsm.Mutation
	if a.Kind.Resource == "services" && a.Kind.GVK.Group == "" {
		var err error
		if reservations, err = c.serviceReservations(ctx, a); err != nil {
			return nil, err
		}
	}
	muts, err := c.validate(ctx, a)
	if err != nil {
		return nil, err
	}
	return append(reservations, muts...), nil
}

func (c *Chain) validate(ctx context.Context, a *Attributes) ([]fsm.Mutation, error) {
	if a.Operation != Create || !a.Kind.Namespaced {
		return nil, nil
	}
	snap, err := c.reader.Read(ctx, false, 0)
	if err != nil {
		return nil, err
	}
	if a.Kind.Resource == "pods" {
		if err := c.validateLimits(snap, a); err != nil {
			return nil, err
		}
	}
	return c.quota(snap, a)
}

// AdmitDelete runs the admission webhooks and policies that match a delete
// (a.OldObject is the object deleted): the mutating webhooks (their
// patches have no object to apply to), the validating admission policies,
// then the validating webhooks.
func (c *Chain) AdmitDelete(ctx context.Context, a *Attributes) error {
	if u, _ := auth.UserFrom(ctx); u != nil {
		if err := nodeRestrictionPodWrite(u, a); err != nil {
			return err
		}
	}
	if err := c.callWebhooks(ctx, a, true); err != nil {
		return err
	}
	if err := c.callPolicies(ctx, a); err != nil {
		return err
	}
	return c.callWebhooks(ctx, a, false)
}

// StatusWebhooks runs the mutating (mutate) or validating admission
// webhooks that match a status update (a.Subresource "status"); the
// validating admission policies run before the validating webhooks.
func (c *Chain) StatusWebhooks(ctx context.Context, a *Attributes, mutate bool) error {
	if u, _ := auth.UserFrom(ctx); u != nil && mutate {
		if err := nodeRestrictionPodWrite(u, a); err != nil {
			return err
		}
	}
	if !mutate {
		if err := c.callPolicies(ctx, a); err != nil {
			return err
		}
	}
	return c.callWebhooks(ctx, a, mutate)
}

// AdmitConnect runs the validating admission policies and webhooks that
// match a CONNECT (a.Operation Connect, a.Object the options), as
// kube-apiserver admits pods/attach, exec and portforward before it
// proxies them. Mutating webhooks are not called for it.
func (c *Chain) AdmitConnect(ctx context.Context, a *Attributes) error {
	if err := c.callPolicies(ctx, a); err != nil {
		return err
	}
	return c.callWebhooks(ctx, a, false)
}

// callPolicies evaluates the validating admission policies bound to a.
func (c *Chain) callPolicies(ctx context.Context, a *Attributes) error {
	snap, err := c.reader.Read(ctx, false, 0)
	if err != nil {
		return err
	}
	u, _ := auth.UserFrom(ctx)
	pa := &policy.Attributes{
		Operation: apiadmission.Operation(a.Operation), Kind: a.Kind,
		Namespace: a.Namespace, Name: a.Name, Subresource: a.Subresource,
		Object: a.Object, OldObject: a.OldObject, DryRun: a.DryRun, User: u, Options: a.Options, ObjectKind: a.ObjectKind,
	}
	return c.policies.Validate(ctx, snap, pa, func(msg string) { warn(ctx, msg) })
}

// SetKubeletTransport lets the admission webhooks served by pods be reached
// through their node's kubelet (call before serving).
func (c *Chain) SetKubeletTransport(rt http.RoundTripper) { c.webhooks.SetKubeletTransport(rt) }

// CustomConverter calls CRDs' conversion webhooks over the admission
// webhooks' transport (registry.SetCustomConverter).
func (c *Chain) CustomConverter() *webhook.Converter {
	return c.webhooks.Converter(func(ctx context.Context) (*state.Snapshot, error) { return c.reader.Read(ctx, false, 0) })
}

// callWebhooks runs the mutating (mutate) or validating admission webhooks
// that match a.
func (c *Chain) callWebhooks(ctx context.Context, a *Attributes, mutate bool) error {
	snap, err := c.reader.Read(ctx, false, 0)
	if err != nil {
		return err
	}
	u, _ := auth.UserFrom(ctx)
	wa := &webhook.Attributes{
		Operation: admissionregistrationv1.OperationType(a.Operation), Kind: a.Kind,
		Namespace: a.Namespace, Name: a.Name, Subresource: a.Subresource,
		Object: a.Object, OldObject: a.OldObject, DryRun: a.DryRun, User: u, Options: a.Options, ObjectKind: a.ObjectKind,
	}
	add := func(msg string) { warn(ctx, msg) }
	if mutate {
		return c.webhooks.Mutate(ctx, snap, wa, add)
	}
	return c.webhooks.Validate(ctx, snap, wa, add)
}
