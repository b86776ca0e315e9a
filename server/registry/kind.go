package registry

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-io/skiff/fsm/state"
)

// Kind describes one served resource. The exported fields are facts used by
// discovery and routing; the behaviour sits behind methods.
type Kind struct {
	GVK        schema.GroupVersionKind
	Resource   string // plural, lower case: "configmaps"
	Singular   string // "configmap"
	Namespaced bool
	ShortNames []string
	Categories []string
	// HasStatus: the kind serves <resource>/status; updates of the main
	// resource keep the stored status, /status updates change only status.
	HasStatus bool
	// HasGeneration: metadata.generation starts at 1 and is bumped when the
	// spec changes.
	HasGeneration bool
	// AllowCreateOnUpdate: a PUT of a missing object creates it.
	AllowCreateOnUpdate bool
	// ReturnDeletedObject: DELETE answers with the deleted object instead
	// of a Success Status.
	ReturnDeletedObject bool
	// NameFn validates metadata.name (and generateName as a prefix).
	NameFn validation.ValidateNameFunc
	// Scale is set for kinds with a scale subresource.
	Scale *ScaleRules
	// Virtual kinds are not stored: the API computes the answer to a
	// create (access and token reviews) or a read (componentstatuses).
	// Verbs lists what they serve.
	Virtual bool
	Verbs   []string

	// extraSubresources are served besides status and scale.
	extraSubresources []Subresource
	// validateStatus checks a /status update's result (nil: metadata only).
	validateStatus func(obj runtime.Object) field.ErrorList
	// statusKeepsMetadata: a /status update also stores the client's
	// metadata changes (labels, annotations...), as kube-apiserver's status
	// strategy for the kind, which resets only the spec (Job, CronJob).
	statusKeepsMetadata bool

	newObject func() runtime.Object
	newList   func() runtime.Object
	// prepareForCreate resets what clients may not set on create (status
	// for most kinds) and fills create-time defaults.
	prepareForCreate func(obj runtime.Object)
	// prepareForUpdate adjusts obj from old before validation (for example
	// keeping allocated fields the client left empty).
	prepareForUpdate func(obj, old runtime.Object)
	// defaults fills defaults; it runs on create and update.
	defaults func(obj runtime.Object)
	// readDefaults is defaults for an object read from the store
	// (custom kinds: the root metadata was coerced when written).
	readDefaults func(obj runtime.Object)
	// validate checks the kind's own fields (metadata is checked for every
	// kind by Validate).
	validate func(obj runtime.Object) field.ErrorList
	// validateUpdate checks what may not change.
	validateUpdate func(obj, old runtime.Object) field.ErrorList
	// fields returns the kind's selectable fields besides metadata.name and
	// metadata.namespace; fieldNames lists them.
	fields     func(obj runtime.Object) fields.Set
	fieldNames []string
	// columns and cells make Table rows; nil means NAME and AGE.
	columns []metav1.TableColumnDefinition
	cells   func(obj runtime.Object, now time.Time) []any
	// gracefulDelete returns the grace period a delete should wait, or
	// false when the object goes at once.
	gracefulDelete func(obj runtime.Object, opts *metav1.DeleteOptions) (int64, bool)

	supportedFields map[string]bool
	// custom: a custom resource's kind (customresource.go), with its
	// schema (nil: none).
	custom bool
	schema *customSchema
	// conversion: the CRD converts its versions with a webhook (nil:
	// strategy None, a version is the stored object relabelled).
	conversion  *customConversion
	terminating bool
	// storedAs: a built-in kind served at a version other than the one
	// it is stored at (autoscaling/v1 HorizontalPodAutoscaler, stored at
	// v2); nil for the stored version.
	storedAs *storedVersion
}

// storedVersion converts a built-in kind's objects to and from the
// version they are stored at, as kube-apiserver's conversion does.
type storedVersion struct {
	gvk        schema.GroupVersionKind
	newObject  func() runtime.Object
	fromStored func(runtime.Object) (runtime.Object, error)
	toStored   func(runtime.Object) (runtime.Object, error)
}

func (k *Kind) init() {
	if k.NameFn == nil {
		k.NameFn = validation.NameIsDNSSubdomain
	}
	if k.Singular == "" {
		k.Singular = lower(k.GVK.Kind)
	}
	k.supportedFields = map[string]bool{"metadata.name": true, "metadata.namespace": true}
	for _, f := range k.fieldNames {
		k.supportedFields[f] = true
	}
	if k.columns == nil {
		k.columns = []metav1.TableColumnDefinition{nameColumn, ageColumn}
		k.cells = func(obj runtime.Object, now time.Time) []any {
			m := mustMeta(obj)
			return []any{m.GetName(), Age(m.GetCreationTimestamp(), now)}
		}
	}
}

// ResourceVerbs are the verbs the kind's main resource serves, sorted as
// kube-apiserver lists them: all of them for a stored kind.
func (k *Kind) ResourceVerbs() []string {
	if k.Verbs != nil {
		return slices.Clone(k.Verbs)
	}
	return []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
}

// GroupResource is the kind's group and plural resource.
func (k *Kind) GroupResource() schema.GroupResource {
	return schema.GroupResource{Group: k.GVK.Group, Resource: k.Resource}
}

// StorageResource is the resource part of the kind's state.Key: the plural
// for the core group, "<group>/<plural>" otherwise, of the group the kind
// is stored in (events.k8s.io Events are stored as core events).
func (k *Kind) StorageResource() string {
	g := k.StoredGVK().Group
	if g == "" {
		return k.Resource
	}
	return g + "/" + k.Resource
}

// Key is the store key of the object namespace/name ("" namespace for
// cluster-scoped kinds).
func (k *Kind) Key(namespace, name string) state.Key {
	if !k.Namespaced {
		namespace = ""
	}
	return state.Key{Resource: k.StorageResource(), Namespace: namespace, Name: name}
}

// StoredGVK is the GroupVersionKind the kind's objects are stored at: GVK
// but for a built-in kind served converted (autoscaling/v1
// HorizontalPodAutoscaler is stored at v2).
func (k *Kind) StoredGVK() schema.GroupVersionKind {
	if k.storedAs != nil {
		return k.storedAs.gvk
	}
	return k.GVK
}

// ListGVK is the GroupVersionKind of the kind's list.
func (k *Kind) ListGVK() schema.GroupVersionKind {
	return k.GVK.GroupVersion().WithKind(k.GVK.Kind + "List")
}

// New returns an empty typed object with apiVersion and kind set.
func (k *Kind) New() runtime.Object {
	o := k.newObject()
	o.GetObjectKind().SetGroupVersionKind(k.GVK)
	return o
}

// NewList returns an empty typed list with apiVersion and kind set.
func (k *Kind) NewList() runtime.Object {
	l := k.newList()
	l.GetObjectKind().SetGroupVersionKind(k.ListGVK())
	return l
}

// Decode turns a stored object into a typed object whose resourceVersion
// is the stored ModifyIndex. The result is the caller's to change.
func (k *Kind) Decode(o *state.Object) (runtime.Object, error) {
	if k.storedAs != nil {
		stored := k.storedAs.newObject()
		if err := json.Unmarshal(o.Data, stored); err != nil {
			return nil, fmt.Errorf("decode %s: %w", o.Key, err)
		}
		obj, err := k.storedAs.fromStored(stored)
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", o.Key, err)
		}
		obj.GetObjectKind().SetGroupVersionKind(k.GVK)
		mustMeta(obj).SetResourceVersion(strconv.FormatUint(o.ModifyIndex, 10))
		return obj, nil
	}
	obj := k.newObject()
	var err error
	if u, ok := obj.(json.Unmarshaler); ok {
		// Custom objects (unstructured): their own decoder, without
		// encoding/json's validating pass over the stored bytes first.
		err = u.UnmarshalJSON(o.Data)
	} else {
		err = json.Unmarshal(o.Data, obj)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", o.Key, err)
	}
	if u, ok := obj.(*unstructured.Unstructured); ok && k.conversion != nil && u.GetAPIVersion() != k.GVK.GroupVersion().String() {
		c, err := k.conversion.decode(u, k.GVK.Version)
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", o.Key, err)
		}
		obj = c
	}
	if k.custom && k.readDefaults != nil {
		// As kube-apiserver's storage decoder of custom resources: the
		// version's schema prunes, coerces and defaults what is read, so
		// an object stored before a default was added gets it.
		k.readDefaults(obj)
	}
	obj.GetObjectKind().SetGroupVersionKind(k.GVK)
	mustMeta(obj).SetResourceVersion(strconv.FormatUint(o.ModifyIndex, 10))
	return obj, nil
}

// Encode returns the stored form of obj: JSON with apiVersion and kind set
// and no resourceVersion. obj is not changed.
func (k *Kind) Encode(obj runtime.Object) ([]byte, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok && k.conversion != nil && k.GVK != k.conversion.storage {
		return k.conversion.encode(k, u)
	}
	if k.storedAs != nil {
		stored, err := k.storedAs.toStored(obj)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", k.GVK.Kind, mustMeta(obj).GetName(), err)
		}
		mustMeta(stored).SetResourceVersion("")
		stored.GetObjectKind().SetGroupVersionKind(k.storedAs.gvk)
		b, err := json.Marshal(stored)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", k.GVK.Kind, mustMeta(obj).GetName(), err)
		}
		return b, nil
	}
	m := mustMeta(obj)
	rv := m.GetResourceVersion()
	m.SetResourceVersion("")
	defer m.SetResourceVersion(rv)
	gvk := obj.GetObjectKind().GroupVersionKind()
	obj.GetObjectKind().SetGroupVersionKind(k.GVK)
	defer obj.GetObjectKind().SetGroupVersionKind(gvk)
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", k.GVK.Kind, m.GetName(), err)
	}
	return b, nil
}

// PrepareForCreate resets what a client may not set on create, fills
// defaults and sets generation 1 for kinds that track it. The API server
// fills uid, creationTimestamp and namespace.
func (k *Kind) PrepareForCreate(obj runtime.Object) {
	if k.prepareForCreate != nil {
		k.prepareForCreate(obj)
	}
	if k.defaults != nil {
		k.defaults(obj)
	}
	m := mustMeta(obj)
	if k.HasGeneration {
		m.SetGeneration(1)
	} else {
		m.SetGeneration(0)
	}
}

// Default fills the kind's defaults into obj. kube-apiserver defaults an
// object when it decodes it, before admission: the API server calls
// Default before the admission plugins, so that they see defaulted
// objects (LimitRanger sees the requests a pod's limits imply).
// PrepareForCreate and PrepareForUpdate default again (defaults are
// idempotent) after the plugins' changes.
func (k *Kind) Default(obj runtime.Object) {
	if k.defaults != nil {
		k.defaults(obj)
	}
}

// PrepareForUpdate makes obj (the client's new version) a valid successor
// of old: server-managed metadata comes from old, status too for kinds with
// a status subresource, defaults are filled and the generation is bumped
// when the spec changed.
func (k *Kind) PrepareForUpdate(obj, old runtime.Object) {
	if k.defaults != nil {
		k.defaults(obj)
	}
	if k.HasStatus {
		copyField(obj, old, "Status")
	}
	m, om := mustMeta(obj), mustMeta(old)
	keepServerMeta(m, om)
	if k.prepareForUpdate != nil {
		k.prepareForUpdate(obj, old)
	}
	m.SetGeneration(om.GetGeneration())
	if k.HasGeneration && !fieldEqual(obj, old, "Spec") {
		m.SetGeneration(om.GetGeneration() + 1)
	}
}

// PrepareForStatusUpdate returns the object a /status update stores: old
// with the status of obj, and obj's labels and annotations (kube-apiserver's
// status strategies reset the spec only: a status PATCH may annotate; a
// Deployment's labels stay, as its status strategy keeps them); for kinds
// whose status updates keep all metadata (Job, CronJob), obj with the spec
// of old.
func (k *Kind) PrepareForStatusUpdate(obj, old runtime.Object) runtime.Object {
	if k.statusKeepsMetadata {
		out := obj.DeepCopyObject()
		copyField(out, old, "Spec")
		m, om := mustMeta(out), mustMeta(old)
		keepServerMeta(m, om)
		m.SetGeneration(om.GetGeneration())
		return out
	}
	out := old.DeepCopyObject()
	copyField(out, obj, "Status")
	m, om := mustMeta(out), mustMeta(obj)
	m.SetAnnotations(maps.Clone(om.GetAnnotations()))
	if k.GVK.Kind != "Deployment" {
		m.SetLabels(maps.Clone(om.GetLabels()))
	}
	return out
}

// keepServerMeta copies the fields clients may not change from om to m.
func keepServerMeta(m, om metav1.Object) {
	m.SetCreationTimestamp(om.GetCreationTimestamp())
	m.SetDeletionTimestamp(om.GetDeletionTimestamp())
	m.SetDeletionGracePeriodSeconds(om.GetDeletionGracePeriodSeconds())
	if m.GetUID() == "" {
		m.SetUID(om.GetUID())
	}
	m.SetSelfLink("")
}

// Validate checks a new object: metadata (name per kind, labels,
// annotations, finalizers, owner references) and the kind's fields.
func (k *Kind) Validate(obj runtime.Object) field.ErrorList {
	m := mustMeta(obj)
	errs := validation.ValidateObjectMetaAccessor(m, k.Namespaced, k.NameFn, field.NewPath("metadata"))
	if k.validate != nil {
		errs = append(errs, k.validate(obj)...)
	}
	return errs
}

// ValidateUpdate checks obj as the successor of old.
func (k *Kind) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	errs := validation.ValidateObjectMetaAccessorUpdate(mustMeta(obj), mustMeta(old), field.NewPath("metadata"))
	if k.validate != nil {
		errs = append(errs, k.validate(obj)...)
	}
	if k.validateUpdate != nil {
		errs = append(errs, k.validateUpdate(obj, old)...)
	}
	return errs
}

// ValidateStatusUpdate checks a /status update (metadata only: the status
// is the reporter's).
func (k *Kind) ValidateStatusUpdate(obj, old runtime.Object) field.ErrorList {
	errs := validation.ValidateObjectMetaAccessorUpdate(mustMeta(obj), mustMeta(old), field.NewPath("metadata"))
	if k.validateStatus != nil {
		errs = append(errs, k.validateStatus(obj)...)
	}
	return errs
}

// NewObject returns an empty object of the kind's Go type without
// apiVersion and kind (for schema generation).
func (k *Kind) NewObject() runtime.Object { return k.newObject() }

// SupportsField reports whether name is a selectable field of the kind.
func (k *Kind) SupportsField(name string) bool { return k.supportedFields[name] }

// FieldNames lists the kind's selectable fields.
func (k *Kind) FieldNames() []string {
	return append([]string{"metadata.name", "metadata.namespace"}, k.fieldNames...)
}

// Fields returns the selectable field values of obj.
func (k *Kind) Fields(obj runtime.Object) fields.Set {
	m := mustMeta(obj)
	set := fields.Set{"metadata.name": m.GetName()}
	if k.Namespaced {
		set["metadata.namespace"] = m.GetNamespace()
	} else {
		set["metadata.namespace"] = ""
	}
	if k.fields != nil {
		for f, v := range k.fields(obj) {
			set[f] = v
		}
	}
	return set
}

// GracefulDelete returns the grace period a delete of obj should wait,
// with false when the object is deleted at once.
func (k *Kind) GracefulDelete(obj runtime.Object, opts *metav1.DeleteOptions) (int64, bool) {
	if k.gracefulDelete == nil {
		return 0, false
	}
	return k.gracefulDelete(obj, opts)
}

// mustMeta returns the metadata accessor of a served typed object.
func mustMeta(obj runtime.Object) metav1.Object {
	m, err := meta.Accessor(obj)
	if err != nil {
		panic(fmt.Sprintf("registry: %T has no metadata: %v", obj, err))
	}
	return m
}

// structField returns the addressable field name of the struct obj points to.
func structField(obj runtime.Object, name string) (reflect.Value, bool) {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	f := v.Elem().FieldByName(name)
	return f, f.IsValid()
}

// copyField sets dst.name to a deep copy of src.name.
func copyField(dst, src runtime.Object, name string) {
	if du, ok := dst.(*unstructured.Unstructured); ok {
		if su, ok := src.(*unstructured.Unstructured); ok {
			copyUnstructuredField(du, su, name)
		}
		return
	}
	d, ok := structField(dst, name)
	s, ok2 := structField(src, name)
	if !ok || !ok2 || d.Type() != s.Type() {
		return
	}
	// Round-trip through the object's DeepCopy to avoid sharing.
	cp := reflect.ValueOf(src.DeepCopyObject())
	d.Set(cp.Elem().FieldByName(name))
}

// fieldEqual compares a.name and b.name semantically.
func fieldEqual(a, b runtime.Object, name string) bool {
	if au, ok := a.(*unstructured.Unstructured); ok && name == "Spec" {
		if bu, ok := b.(*unstructured.Unstructured); ok {
			return unstructuredSpecEqual(au, bu)
		}
	}
	x, ok := structField(a, name)
	y, ok2 := structField(b, name)
	if !ok || !ok2 {
		return true
	}
	return apiequality.Semantic.DeepEqual(x.Interface(), y.Interface())
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
