package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Claimer adopts orphans that match an owner's selector and releases the
// objects it owns that no longer match (Kubernetes' ControllerRefManager).
// Adoption and release are strategic merge patches of
// metadata.ownerReferences with the object's UID as a precondition.
type Claimer struct {
	Owner    metav1.Object
	GVK      schema.GroupVersionKind
	Selector labels.Selector
	// Fresh returns the owner as the API has it now; adoption is refused
	// when it is gone, replaced or being deleted. Nil: trust Owner.
	Fresh func(ctx context.Context) (metav1.Object, error)
	// Patch applies a strategic merge patch to namespace/name.
	Patch func(ctx context.Context, namespace, name string, patch []byte) error
	// Finalizers are added to an object adopted and removed from one
	// released, in the same patch (the Job controller's tracking
	// finalizer).
	Finalizers []string

	once     sync.Once
	adoptErr error
}

// Claim returns the objects the owner controls after adopting and
// releasing.
func Claim[T metav1.Object](ctx context.Context, c *Claimer, objs []T) ([]T, error) {
	var out []T
	for _, o := range objs {
		ref := metav1.GetControllerOf(o)
		if ref != nil {
			if ref.UID != c.Owner.GetUID() {
				continue
			}
			if c.Selector.Matches(labels.Set(o.GetLabels())) || c.Owner.GetDeletionTimestamp() != nil {
				out = append(out, o)
				continue
			}
			if err := c.release(ctx, o); err != nil && !apierrors.IsNotFound(err) {
				return nil, err
			}
			continue
		}
		if c.Owner.GetDeletionTimestamp() != nil || o.GetDeletionTimestamp() != nil ||
			!c.Selector.Matches(labels.Set(o.GetLabels())) {
			continue
		}
		if err := c.canAdopt(ctx); err != nil {
			return out, err
		}
		if err := c.adopt(ctx, o); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return out, err
		}
		out = append(out, o)
	}
	return out, nil
}

func (c *Claimer) canAdopt(ctx context.Context) error {
	c.once.Do(func() {
		if c.Fresh == nil {
			return
		}
		fresh, err := c.Fresh(ctx)
		switch {
		case err != nil:
			c.adoptErr = err
		case fresh.GetUID() != c.Owner.GetUID():
			c.adoptErr = fmt.Errorf("original %s %s/%s is gone: got uid %s, wanted %s", c.GVK.Kind,
				c.Owner.GetNamespace(), c.Owner.GetName(), fresh.GetUID(), c.Owner.GetUID())
		case fresh.GetDeletionTimestamp() != nil:
			c.adoptErr = fmt.Errorf("%s %s/%s has just been deleted at %v", c.GVK.Kind,
				c.Owner.GetNamespace(), c.Owner.GetName(), fresh.GetDeletionTimestamp())
		}
	})
	return c.adoptErr
}

func (c *Claimer) adopt(ctx context.Context, o metav1.Object) error {
	ref := OwnerRef(c.Owner, c.GVK)
	meta := map[string]any{
		"ownerReferences": []metav1.OwnerReference{ref},
		"uid":             o.GetUID(),
	}
	if len(c.Finalizers) > 0 {
		meta["finalizers"] = c.Finalizers
	}
	p, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return err
	}
	return c.Patch(ctx, o.GetNamespace(), o.GetName(), p)
}

func (c *Claimer) release(ctx context.Context, o metav1.Object) error {
	var fins []string
	for _, f := range c.Finalizers {
		if slices.Contains(o.GetFinalizers(), f) {
			fins = append(fins, f)
		}
	}
	p, err := ReleasePatch(c.Owner.GetUID(), o.GetUID(), fins...)
	if err != nil {
		return err
	}
	return c.Patch(ctx, o.GetNamespace(), o.GetName(), p)
}

// ReleasePatch is the strategic merge patch that removes the owner
// reference to owner, and the given finalizers, from the object with UID
// uid.
func ReleasePatch(owner, uid types.UID, finalizers ...string) ([]byte, error) {
	meta := map[string]any{
		"ownerReferences": []map[string]any{{"$patch": "delete", "uid": owner}},
		"uid":             uid,
	}
	if len(finalizers) > 0 {
		meta["$deleteFromPrimitiveList/finalizers"] = finalizers
	}
	return json.Marshal(map[string]any{"metadata": meta})
}

// Candidates returns the objects matching an owner's selector (matching)
// and those it already controls by the controller-UID index of inf, each
// once, that keep accepts (nil keeps all): what Claim is given.
func Candidates[T metav1.Object](matching []T, inf cache.SharedIndexInformer, owner types.UID, keep func(T) bool) []T {
	seen := make(map[types.UID]bool, len(matching))
	var out []T
	for _, o := range append(matching, ByIndex[T](inf, IndexControllerUID, string(owner))...) {
		if !seen[o.GetUID()] && (keep == nil || keep(o)) {
			seen[o.GetUID()] = true
			out = append(out, o)
		}
	}
	return out
}

// ClaimPods returns the pods owner controls after adopting the orphans in
// its namespace that match sel and releasing its pods that no longer do;
// keep filters the candidates (nil keeps all). podInf is the shared pod
// informer; fresh returns the owner as the API has it now; finalizers are
// removed from the pods released.
func (cc *Context) ClaimPods(ctx context.Context, podInf cache.SharedIndexInformer, owner metav1.Object, gvk schema.GroupVersionKind,
	sel labels.Selector, fresh func(context.Context) (metav1.Object, error), keep func(*corev1.Pod) bool, finalizers ...string) ([]*corev1.Pod, error) {
	matching, err := corelisters.NewPodLister(podInf.GetIndexer()).Pods(owner.GetNamespace()).List(sel)
	if err != nil {
		return nil, err
	}
	cl := &Claimer{Owner: owner, GVK: gvk, Selector: sel, Fresh: fresh, Finalizers: finalizers,
		Patch: func(ctx context.Context, ns, name string, p []byte) error {
			_, err := cc.Client.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, p, metav1.PatchOptions{})
			return err
		}}
	return Claim(ctx, cl, Candidates(matching, podInf, owner.GetUID(), keep))
}
