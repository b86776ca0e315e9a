// Package webhook calls the admission webhooks of the stored
// MutatingWebhookConfigurations and ValidatingWebhookConfigurations
// (admissionregistration.k8s.io/v1), as kube-apiserver does: mutating
// webhooks in name order, their JSONPatch responses applied, those with
// reinvocationPolicy IfNeeded called once more when a later webhook changed
// the object; validating webhooks in parallel. Matching is by rules,
// namespaceSelector and objectSelector (match.go) and matchConditions; the call is an
// AdmissionReview v1 over HTTPS to clientConfig.url, verified with the
// caBundle, or to a ready endpoint of clientConfig.service verified as
// <service>.<namespace>.svc (call.go, service.go). matchConditions are
// evaluated with k8s.io/apiserver's CEL matcher (conditions.go).
package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/registry"
)

// Attributes describe the request admitted.
type Attributes struct {
	Operation   admissionregistrationv1.OperationType
	Kind        *registry.Kind
	Namespace   string
	Name        string
	Subresource string
	// Object is changed in place by mutating webhooks' patches.
	Object    runtime.Object
	OldObject runtime.Object
	DryRun    bool
	User      *auth.User
	// Options is the request's CreateOptions, UpdateOptions or
	// DeleteOptions, sent as request.options (may be nil).
	Options runtime.Object
	// ObjectKind is Object's kind when it is not Kind's: a CONNECT's
	// options (PodAttachOptions…), sent as request.kind.
	ObjectKind schema.GroupVersionKind
}

// objectGVK is the kind of a's object, as the review names it.
func (a *Attributes) objectGVK() schema.GroupVersionKind {
	if !a.ObjectKind.Empty() {
		return a.ObjectKind
	}
	return a.Kind.GVK
}

// Dispatcher finds and calls the webhooks that match a request.
type Dispatcher struct {
	reg     *registry.Registry
	log     *slog.Logger
	clients *clientCache
	// conditions evaluates matchConditions (conditions.go).
	conditions *conditions
	// kubelets reaches the agents' kubelet servers (nil: a Service's
	// endpoint is dialed directly).
	kubelets http.RoundTripper
}

// SetKubeletTransport makes the dispatcher reach webhooks served by pods
// through their node's kubelet pod proxy (call before serving).
func (d *Dispatcher) SetKubeletTransport(rt http.RoundTripper) { d.kubelets = rt }

// New returns a dispatcher over the configurations in reg's kinds.
func New(reg *registry.Registry, log *slog.Logger) *Dispatcher {
	if log == nil {
		log = slog.Default()
	}
	return &Dispatcher{reg: reg, log: log.With("component", "admission-webhook"), clients: newClientCache(), conditions: newConditions()}
}

// mutatingHook is one webhook of a MutatingWebhookConfiguration.
type mutatingHook struct {
	config string
	admissionregistrationv1.MutatingWebhook
}

// exempt reports whether a request is never sent to webhooks: the webhook
// configurations themselves, so that a broken webhook cannot lock them.
func exempt(a *Attributes) bool {
	return a.Kind.GVK.Group == admissionregistrationv1.GroupName
}

func (d *Dispatcher) mutating(snap *state.Snapshot) ([]mutatingHook, error) {
	kind, ok := d.reg.Lookup(admissionregistrationv1.GroupName, "v1", "mutatingwebhookconfigurations")
	if !ok {
		return nil, nil
	}
	var (
		hooks []mutatingHook
		derr  error
	)
	snap.List(kind.StorageResource(), "", "", func(o *state.Object) bool {
		obj, err := kind.Decode(o)
		if err != nil {
			derr = err
			return false
		}
		c := obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
		for _, w := range c.Webhooks {
			hooks = append(hooks, mutatingHook{config: c.Name, MutatingWebhook: w})
		}
		return true
	})
	// Configurations in name order, webhooks in their order within one.
	sort.SliceStable(hooks, func(i, j int) bool { return hooks[i].config < hooks[j].config })
	return hooks, derr
}

func (d *Dispatcher) validating(snap *state.Snapshot) ([]admissionregistrationv1.ValidatingWebhook, error) {
	kind, ok := d.reg.Lookup(admissionregistrationv1.GroupName, "v1", "validatingwebhookconfigurations")
	if !ok {
		return nil, nil
	}
	var (
		hooks []admissionregistrationv1.ValidatingWebhook
		derr  error
	)
	snap.List(kind.StorageResource(), "", "", func(o *state.Object) bool {
		obj, err := kind.Decode(o)
		if err != nil {
			derr = err
			return false
		}
		hooks = append(hooks, obj.(*admissionregistrationv1.ValidatingWebhookConfiguration).Webhooks...)
		return true
	})
	return hooks, derr
}

// Mutate calls the matching mutating webhooks in order and applies their
// patches to a.Object.
func (d *Dispatcher) Mutate(ctx context.Context, snap *state.Snapshot, a *Attributes, warn func(string)) error {
	if exempt(a) {
		return nil
	}
	hooks, err := d.mutating(snap)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if len(hooks) == 0 {
		return nil
	}
	// invokedAt[i] is the change count when hook i last ran; a hook with
	// IfNeeded is called again when the object changed after it ran.
	changes := 0
	invokedAt := map[int]int{}
	for i := range hooks {
		h := &hooks[i]
		matched, err := d.matches(snap, a, h.Rules, h.NamespaceSelector, h.ObjectSelector)
		if err != nil {
			return err
		}
		if matched {
			matched, err = d.conditionsMatch(ctx, a, h.Name, h.MatchConditions, h.FailurePolicy, true)
			if err != nil {
				return err
			}
		}
		if !matched {
			continue
		}
		changed, err := d.callMutating(ctx, snap, a, h, warn)
		if err != nil {
			return err
		}
		if changed {
			changes++
		}
		// Its own change does not call for a second call.
		invokedAt[i] = changes
	}
	if changes == 0 {
		return nil
	}
	for i := range hooks {
		h := &hooks[i]
		at, ran := invokedAt[i]
		if !ran || at == changes || h.ReinvocationPolicy == nil || *h.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
			continue
		}
		if _, err := d.callMutating(ctx, snap, a, h, warn); err != nil {
			return err
		}
	}
	return nil
}

// Validate calls the matching validating webhooks in parallel; the first
// refusal (in webhook order) is the answer.
func (d *Dispatcher) Validate(ctx context.Context, snap *state.Snapshot, a *Attributes, warn func(string)) error {
	if exempt(a) {
		return nil
	}
	hooks, err := d.validating(snap)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	var matched []*admissionregistrationv1.ValidatingWebhook
	for i := range hooks {
		h := &hooks[i]
		ok, err := d.matches(snap, a, h.Rules, h.NamespaceSelector, h.ObjectSelector)
		if err != nil {
			return err
		}
		if ok {
			if ok, err = d.conditionsMatch(ctx, a, h.Name, h.MatchConditions, h.FailurePolicy, false); err != nil {
				return err
			}
		}
		if ok {
			matched = append(matched, h)
		}
	}
	if len(matched) == 0 {
		return nil
	}
	// The object is encoded once; the calls only read it.
	errs := make([]error, len(matched))
	var wg sync.WaitGroup
	for i, h := range matched {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.callValidating(ctx, snap, a, h, warn)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// failed applies a webhook's failurePolicy to an error calling it.
func (d *Dispatcher) failed(name string, policy *admissionregistrationv1.FailurePolicyType, err error) error {
	if policy != nil && *policy == admissionregistrationv1.Ignore {
		d.log.Warn("webhook call failed, ignored (failurePolicy Ignore)", "webhook", name, "err", err)
		return nil
	}
	d.log.Warn("webhook call failed", "webhook", name, "err", err)
	return apierrors.NewInternalError(fmt.Errorf("failed calling webhook %q: %w", name, err))
}
