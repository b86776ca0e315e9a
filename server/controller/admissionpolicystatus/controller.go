// Package admissionpolicystatus type-checks ValidatingAdmissionPolicies
// and records the result in their status (observedGeneration and
// typeChecking.expressionWarnings), as Kubernetes'
// validatingadmissionpolicy-status controller does, with k8s.io/apiserver's
// TypeChecker: each expression is checked against the schemas of the kinds
// the policy matches (and of its paramKind), read from the API's OpenAPI v3
// documents through discovery.
package admissionpolicystatus

import (
	"context"
	"log/slog"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	admissionlisters "k8s.io/client-go/listers/admissionregistration/v1"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "validatingadmissionpolicy-status-controller"

// Controller writes the type-checking status of the policies.
type Controller struct {
	cc       *controller.Context
	policies admissionlisters.ValidatingAdmissionPolicyLister
	inf      cache.SharedIndexInformer
	queue    controller.Queue
	log      *slog.Logger
	checker  *validating.TypeChecker
	// disc caches discovery and OpenAPI for one sync.
	disc discovery.CachedDiscoveryInterface
}

// New returns the controller.
func New(cc *controller.Context) *Controller {
	inf := cc.Informers.Admissionregistration().V1().ValidatingAdmissionPolicies()
	disc := memory.NewMemCacheClient(cc.Client.Discovery())
	c := &Controller{cc: cc, policies: inf.Lister(), inf: inf.Informer(), queue: controller.NewQueue(component, 0), log: cc.Log(component),
		disc: disc,
		checker: &validating.TypeChecker{
			SchemaResolver: &resolver.ClientDiscoveryResolver{Discovery: disc},
			RestMapper:     restmapper.NewDeferredDiscoveryRESTMapper(disc),
		}}
	add := func(obj any) {
		if p, ok := obj.(*admissionregistrationv1.ValidatingAdmissionPolicy); ok && p.Generation != p.Status.ObservedGeneration {
			if key, ok := controller.KeyOf(p); ok {
				c.queue.Add(key)
			}
		}
	}
	controller.AddHandler(c.inf, cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, obj any) { add(obj) }}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.inf) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) sync(ctx context.Context, key string) error {
	p, err := c.policies.Get(key)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if p.Generation == p.Status.ObservedGeneration {
		return nil
	}
	// Fresh schemas: a CRD's may have changed since the last sync.
	c.disc.Invalidate()
	warnings := c.checker.Check(p)
	upd := p.DeepCopy()
	upd.Status.ObservedGeneration = p.Generation
	upd.Status.TypeChecking = &admissionregistrationv1.TypeChecking{ExpressionWarnings: warnings}
	_, err = c.cc.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or changed: the next event brings it back
	}
	if err == nil && len(warnings) > 0 {
		c.log.Info("policy type-checked with warnings", "policy", key, "warnings", len(warnings))
	}
	return err
}
