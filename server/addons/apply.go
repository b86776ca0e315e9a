package addons

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/jsonmergepatch"
	"k8s.io/apimachinery/pkg/util/mergepatch"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
)

// Action is what applying one object did.
type Action string

const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
)

// ErrNotServed marks an object whose kind the API does not serve.
var ErrNotServed = errors.New("kind not served")

// Applier applies objects through the API with kubectl's client-side apply:
// the object as the manifest writes it is kept in the last-applied
// annotation, and an update is a three-way patch (last applied, manifest,
// live object): strategic merge for built-in kinds, JSON merge for others.
// Fields the manifest does not set (status, defaults, what controllers
// write) are left alone; fields it sets are restored.
type Applier struct {
	Client dynamic.Interface
	Mapper meta.RESTMapper
}

// Target is where an object lives in the API.
type Target struct {
	Resource   schema.GroupVersionResource
	Namespaced bool
	Namespace  string
	Name       string
}

func (t Target) String() string {
	r := t.Resource.Resource
	if t.Resource.Group != "" {
		r += "." + t.Resource.Group
	}
	if t.Namespace != "" {
		return r + " " + t.Namespace + "/" + t.Name
	}
	return r + " " + t.Name
}

// ID identifies the object whatever the version it is written in.
func (t Target) ID() string {
	return t.Resource.Group + "/" + t.Resource.Resource + "/" + t.Namespace + "/" + t.Name
}

// Resolve maps o to its resource and sets its namespace as the API expects
// (namespaced objects default to "default", as kubectl apply does).
func (a *Applier) Resolve(o *unstructured.Unstructured) (Target, error) {
	gvk := o.GroupVersionKind()
	m, err := a.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return Target{}, fmt.Errorf("%w: %s %s (custom resources are not served yet)", ErrNotServed, o.GetAPIVersion(), o.GetKind())
		}
		return Target{}, fmt.Errorf("map %s %s: %w", o.GetAPIVersion(), o.GetKind(), err)
	}
	t := Target{Resource: m.Resource, Name: o.GetName()}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		t.Namespaced = true
		if o.GetNamespace() == "" {
			o.SetNamespace(metav1.NamespaceDefault)
		}
		t.Namespace = o.GetNamespace()
	} else {
		o.SetNamespace("")
	}
	return t, nil
}

func (a *Applier) resource(t Target) dynamic.ResourceInterface {
	if t.Namespaced {
		return a.Client.Resource(t.Resource).Namespace(t.Namespace)
	}
	return a.Client.Resource(t.Resource)
}

// Apply creates o, or (mode Reconcile) patches the live object to match
// it. o must have been resolved to t.
func (a *Applier) Apply(ctx context.Context, t Target, o *unstructured.Unstructured, mode Mode) (Action, error) {
	modified, err := withLastApplied(o)
	if err != nil {
		return "", err
	}
	ri := a.resource(t)
	for attempt := 0; ; attempt++ {
		cur, err := ri.Get(ctx, t.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			obj := &unstructured.Unstructured{}
			if err := obj.UnmarshalJSON(modified); err != nil {
				return "", err
			}
			_, err = ri.Create(ctx, obj, metav1.CreateOptions{FieldManager: fieldManager})
			if apierrors.IsAlreadyExists(err) && attempt < 3 {
				continue
			}
			if err != nil {
				return "", err
			}
			return Created, nil
		}
		if err != nil {
			return "", err
		}
		if mode == ModeEnsureExists {
			return Unchanged, nil
		}
		patch, pt, err := threeWayPatch(o, modified, cur)
		if err != nil {
			return "", fmt.Errorf("diff %s: %w", t, err)
		}
		if string(patch) == "{}" {
			return Unchanged, nil
		}
		_, err = ri.Patch(ctx, t.Name, pt, patch, metav1.PatchOptions{FieldManager: fieldManager})
		if apierrors.IsConflict(err) && attempt < 3 {
			continue
		}
		if err != nil {
			return "", err
		}
		return Updated, nil
	}
}

// Delete deletes the object t names if its UID is still uid, in the
// background (its dependents go through the garbage collector).
func (a *Applier) Delete(ctx context.Context, t Target, uid types.UID) error {
	policy := metav1.DeletePropagationBackground
	err := a.resource(t).Delete(ctx, t.Name, metav1.DeleteOptions{
		PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or replaced by another object
	}
	return err
}

const fieldManager = "skiff-addon-manager"

// withLastApplied returns o's JSON carrying the last-applied annotation
// (o's JSON without that annotation), as kubectl apply sends.
func withLastApplied(o *unstructured.Unstructured) ([]byte, error) {
	c := o.DeepCopy()
	ann := c.GetAnnotations()
	delete(ann, AnnotationLastApplied)
	c.SetAnnotations(ann)
	if len(ann) == 0 {
		unstructured.RemoveNestedField(c.Object, "metadata", "annotations")
	}
	last, err := c.MarshalJSON()
	if err != nil {
		return nil, err
	}
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationLastApplied] = string(last)
	c.SetAnnotations(ann)
	return c.MarshalJSON()
}

// threeWayPatch is kubectl apply's patch from the last applied
// configuration (on the live object), the manifest, and the live object.
func threeWayPatch(o *unstructured.Unstructured, modified []byte, cur *unstructured.Unstructured) ([]byte, types.PatchType, error) {
	current, err := cur.MarshalJSON()
	if err != nil {
		return nil, "", err
	}
	var original []byte
	if s, ok := cur.GetAnnotations()[AnnotationLastApplied]; ok {
		original = []byte(s)
	}
	preconditions := []mergepatch.PreconditionFunc{
		mergepatch.RequireKeyUnchanged("apiVersion"),
		mergepatch.RequireKeyUnchanged("kind"),
		mergepatch.RequireMetadataKeyUnchanged("name"),
	}
	if typed, err := scheme.Scheme.New(o.GroupVersionKind()); err == nil {
		lookup, err := strategicpatch.NewPatchMetaFromStruct(typed)
		if err != nil {
			return nil, "", err
		}
		p, err := strategicpatch.CreateThreeWayMergePatch(original, modified, current, lookup, true, preconditions...)
		return p, types.StrategicMergePatchType, err
	}
	p, err := jsonmergepatch.CreateThreeWayJSONMergePatch(original, modified, current, preconditions...)
	return p, types.MergePatchType, err
}
