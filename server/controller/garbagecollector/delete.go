package garbagecollector

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// syncAttempt looks at one object: a virtual owner is verified, an owner
// deleting in the foreground waits for (or releases) its dependents, and a
// dependent whose owners are all gone (or being deleted in the
// foreground) is deleted.
func (c *Controller) syncAttempt(ctx context.Context, key string) error {
	id, ok := c.graph.get(uidOf(key))
	if !ok {
		return nil
	}
	if id.virtual {
		return c.verifyVirtual(ctx, id)
	}
	if id.foreground {
		return c.processDeletingDependents(ctx, id)
	}
	if len(id.owners) == 0 {
		return nil
	}
	// Every owner observed and none deleting in the foreground: nothing
	// to do, without reading anything.
	quick := true
	for _, ref := range id.owners {
		if observed, _, fg := c.graph.owner(ref.UID); !observed || fg {
			quick = false
		}
	}
	if quick {
		return nil
	}
	latest, err := c.cc.Metadata.Resource(id.gvr).Namespace(id.namespace).Get(ctx, id.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if latest.UID != id.uid || len(latest.OwnerReferences) == 0 {
		return nil
	}
	if latest.DeletionTimestamp != nil && !slices.Contains(latest.Finalizers, metav1.FinalizerDeleteDependents) {
		return nil
	}
	var solid, gone []metav1.OwnerReference
	waiting := 0
	for _, ref := range latest.OwnerReferences {
		state, err := c.ownerState(ctx, ref, id.namespace)
		if err != nil {
			return err
		}
		switch state {
		case ownerSolid:
			solid = append(solid, ref)
		case ownerAbsent:
			gone = append(gone, ref)
		case ownerWaiting:
			waiting++
			gone = append(gone, ref)
		}
	}
	switch {
	case len(solid) > 0:
		if len(gone) == 0 {
			return nil
		}
		// Keep the object for its live owners; drop the others.
		return c.removeOwnerRefs(ctx, id.gvr, id.namespace, id.name, id.uid, gone)
	case waiting > 0 && id.hasDependents:
		// An owner waits for this object, which has dependents of its own:
		// delete it in the foreground too, so the owner waits for them.
		// When one of those dependents waits for its own dependents too,
		// the objects may wait for each other in a cycle: this object's
		// references stop blocking its owners first, as Kubernetes' garbage
		// collector does (the detection may see cycles that are not, which
		// costs only the owners' wait for this object).
		for _, d := range id.dependents {
			if d.foreground {
				if err := c.unblockOwnerRefs(ctx, id, latest.OwnerReferences); err != nil {
					return err
				}
				break
			}
		}
		return c.deleteObject(ctx, id, metav1.DeletePropagationForeground)
	default:
		policy := metav1.DeletePropagationBackground
		switch {
		case slices.Contains(latest.Finalizers, metav1.FinalizerOrphanDependents):
			policy = metav1.DeletePropagationOrphan
		case slices.Contains(latest.Finalizers, metav1.FinalizerDeleteDependents):
			policy = metav1.DeletePropagationForeground
		}
		return c.deleteObject(ctx, id, policy)
	}
}

type ownerStateKind int

const (
	ownerSolid ownerStateKind = iota
	ownerAbsent
	ownerWaiting // being deleted in the foreground
)

// ownerState tells whether the owner named by ref exists (from the graph
// when observed there, else with a live read).
func (c *Controller) ownerState(ctx context.Context, ref metav1.OwnerReference, ns string) (ownerStateKind, error) {
	if observed, _, fg := c.graph.owner(ref.UID); observed {
		if fg {
			return ownerWaiting, nil
		}
		return ownerSolid, nil
	}
	gvr, namespaced, err := c.resourceFor(ref.APIVersion, ref.Kind)
	if err != nil {
		return 0, fmt.Errorf("owner %s %s: %w", ref.Kind, ref.Name, err)
	}
	if !namespaced {
		ns = ""
	}
	o, err := c.cc.Metadata.Resource(gvr).Namespace(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return ownerAbsent, nil
	case err != nil:
		return 0, err
	case o.UID != ref.UID:
		return ownerAbsent, nil
	case o.DeletionTimestamp != nil && slices.Contains(o.Finalizers, metav1.FinalizerDeleteDependents):
		return ownerWaiting, nil
	}
	return ownerSolid, nil
}

// verifyVirtual checks an owner known only from references: when it does
// not exist, its dependents are looked at.
func (c *Controller) verifyVirtual(ctx context.Context, id ident) error {
	gvr, namespaced, err := c.resourceFor(id.apiVersion, id.kind)
	if err != nil {
		return fmt.Errorf("owner %s %s: %w", id.kind, id.name, err)
	}
	ns := id.namespace
	if !namespaced {
		ns = ""
	}
	o, err := c.cc.Metadata.Resource(gvr).Namespace(ns).Get(ctx, id.name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err == nil && o.UID == id.uid {
		// Exists: its informer reports it, once there is one (a new
		// CRD's resource is watched after the next rediscovery). Until
		// then look again, or an owner deleted meanwhile is missed.
		if !c.watches(gvr) {
			c.attempt.AddAfter(string(id.uid), unwatchedOwnerRecheck)
		}
		return nil
	}
	for _, d := range c.graph.removeVirtual(id.uid) {
		c.attempt.Add(string(d))
	}
	return nil
}

// unwatchedOwnerRecheck is how often an owner that exists but whose
// resource has no informer yet is looked at again.
const unwatchedOwnerRecheck = 10 * time.Second

// watches reports whether gvr's resource (in any version) has an
// informer feeding the graph.
func (c *Controller) watches(gvr schema.GroupVersionResource) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := range c.watching {
		if w.GroupResource() == gvr.GroupResource() {
			return true
		}
	}
	return false
}

// processDeletingDependents: an owner deleting in the foreground loses
// its finalizer once no blocking dependent is left; until then its
// dependents are (re)looked at.
func (c *Controller) processDeletingDependents(ctx context.Context, id ident) error {
	blocked := false
	for _, d := range id.dependents {
		if !d.blocking {
			continue
		}
		blocked = true
		if !d.deleting {
			c.attempt.Add(string(d.uid))
		}
	}
	if blocked {
		return nil
	}
	return c.removeFinalizer(ctx, id.gvr, id.namespace, id.name, id.uid, metav1.FinalizerDeleteDependents)
}

// syncOrphan removes the references to an owner with the orphan finalizer
// from its dependents, then the finalizer.
func (c *Controller) syncOrphan(ctx context.Context, key string) error {
	id, ok := c.graph.get(uidOf(key))
	if !ok || !id.orphan {
		return nil
	}
	for _, d := range id.dependents {
		err := c.removeOwnerRefs(ctx, d.gvr, d.ns, d.name, d.uid, []metav1.OwnerReference{{UID: id.uid}})
		if err != nil {
			return err
		}
	}
	return c.removeFinalizer(ctx, id.gvr, id.namespace, id.name, id.uid, metav1.FinalizerOrphanDependents)
}

func (c *Controller) deleteObject(ctx context.Context, id ident, policy metav1.DeletionPropagation) error {
	uid := id.uid
	err := c.cc.Metadata.Resource(id.gvr).Namespace(id.namespace).Delete(ctx, id.name, metav1.DeleteOptions{
		PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err == nil {
		c.log.Debug("deleted dependent", "resource", id.gvr.Resource, "namespace", id.namespace, "name", id.name, "propagation", policy)
	}
	return err
}

// removeOwnerRefs patches the references to the given owners out of an
// object (its UID a precondition).
func (c *Controller) removeOwnerRefs(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, uid types.UID, refs []metav1.OwnerReference) error {
	dels := make([]map[string]any, 0, len(refs))
	for _, r := range refs {
		dels = append(dels, map[string]any{"$patch": "delete", "uid": r.UID})
	}
	p, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": dels, "uid": uid}})
	if err != nil {
		return err
	}
	_, err = c.cc.Metadata.Resource(gvr).Namespace(ns).Patch(ctx, name, types.StrategicMergePatchType, p, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// unblockOwnerRefs sets blockOwnerDeletion to false in the object's
// blocking owner references (its UID a precondition).
func (c *Controller) unblockOwnerRefs(ctx context.Context, id ident, refs []metav1.OwnerReference) error {
	var set []map[string]any
	for _, r := range refs {
		if r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion {
			set = append(set, map[string]any{"uid": r.UID, "blockOwnerDeletion": false})
		}
	}
	if len(set) == 0 {
		return nil
	}
	p, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": set, "uid": id.uid}})
	if err != nil {
		return err
	}
	_, err = c.cc.Metadata.Resource(id.gvr).Namespace(id.namespace).Patch(ctx, id.name, types.StrategicMergePatchType, p, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err == nil {
		c.log.Info("owner references made non-blocking to break a possible cycle", "resource", id.gvr.Resource, "namespace", id.namespace, "name", id.name)
	}
	return err
}

// removeFinalizer patches one finalizer out of an object.
func (c *Controller) removeFinalizer(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, uid types.UID, f string) error {
	p, err := json.Marshal(map[string]any{"metadata": map[string]any{"$deleteFromPrimitiveList/finalizers": []string{f}, "uid": uid}})
	if err != nil {
		return err
	}
	_, err = c.cc.Metadata.Resource(gvr).Namespace(ns).Patch(ctx, name, types.StrategicMergePatchType, p, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}
