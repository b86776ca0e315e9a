package registry

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiextensionsvalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apiextensions-apiserver/pkg/registry/customresource/tableconvertor"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/version"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
)

// customSet is the immutable set of custom resources served at one time:
// the CRDs and one Kind per served version. The registry swaps it whole.
type customSet struct {
	crds      []*apiextensionsv1.CustomResourceDefinition
	kinds     []*Kind
	byGVR     map[schema.GroupVersionResource]*Kind
	byStorage map[string]*Kind
	// gen counts the sets: it changes whenever the set does.
	gen uint64
}

var emptyCustomSet = &customSet{}

func (r *Registry) customSet() *customSet {
	if c := r.custom.Load(); c != nil {
		return c
	}
	return emptyCustomSet
}

// SetCustomResourceDefinitions serves the custom resources of crds,
// replacing the ones served before. A CRD that cannot be served (a schema
// that no longer builds, a resource a built-in kind or an earlier CRD
// serves) is left out and named in the returned error; the others are
// served.
func (r *Registry) SetCustomResourceDefinitions(crds []*apiextensionsv1.CustomResourceDefinition) error {
	set := &customSet{byGVR: map[schema.GroupVersionResource]*Kind{}, byStorage: map[string]*Kind{},
		gen: r.customSet().gen + 1}
	var errs []error
	sorted := append([]*apiextensionsv1.CustomResourceDefinition(nil), crds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, crd := range sorted {
		kinds, storage, err := customKinds(crd, r.converter)
		if err == nil {
			for _, k := range kinds {
				gvr := k.GVK.GroupVersion().WithResource(k.Resource)
				if _, dup := r.byGVR[gvr]; dup {
					err = fmt.Errorf("%s is served by a built-in kind", gvr)
				} else if _, dup := set.byGVR[gvr]; dup {
					err = fmt.Errorf("%s is served by another CustomResourceDefinition", gvr)
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("CustomResourceDefinition %s: %w", crd.Name, err))
			continue
		}
		set.crds = append(set.crds, crd)
		for _, k := range kinds {
			set.kinds = append(set.kinds, k)
			set.byGVR[k.GVK.GroupVersion().WithResource(k.Resource)] = k
		}
		if storage != nil {
			set.byStorage[storage.StorageResource()] = storage
		}
	}
	r.custom.Store(set)
	return errors.Join(errs...)
}

// CustomGeneration changes whenever the served custom resources do.
func (r *Registry) CustomGeneration() uint64 { return r.customSet().gen }

// CustomResourceDefinitions lists the CRDs whose resources are served.
func (r *Registry) CustomResourceDefinitions() []*apiextensionsv1.CustomResourceDefinition {
	return append([]*apiextensionsv1.CustomResourceDefinition(nil), r.customSet().crds...)
}

// customKinds builds one Kind per served version of crd, the versions in
// kube's priority order (v2 before v1 before v1beta1), and returns the
// storage version's Kind too.
func customKinds(crd *apiextensionsv1.CustomResourceDefinition, conv CustomConverter) ([]*Kind, *Kind, error) {
	in, err := internalCRD(crd)
	if err != nil {
		return nil, nil, err
	}
	versions := append([]apiextensionsv1.CustomResourceDefinitionVersion(nil), crd.Spec.Versions...)
	sort.SliceStable(versions, func(i, j int) bool {
		return version.CompareKubeAwareVersionStrings(versions[i].Name, versions[j].Name) > 0
	})
	var kinds []*Kind
	var storage *Kind
	for _, v := range versions {
		// The internal form keeps a schema (and subresources) all
		// versions share at the top: ask the library's helpers.
		sv, err := apiextensions.GetSchemaForVersion(in, v.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("version %s: %w", v.Name, err)
		}
		subs, err := apiextensions.GetSubresourcesForVersion(in, v.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("version %s: %w", v.Name, err)
		}
		k, err := customKind(crd, v, sv, subs)
		if err != nil {
			return nil, nil, fmt.Errorf("version %s: %w", v.Name, err)
		}
		k.init()
		if v.Storage {
			storage = k
		}
		if v.Served {
			kinds = append(kinds, k)
		}
	}
	if c := webhookConversion(crd, conv, storage); c != nil {
		for _, k := range kinds {
			k.conversion = c
		}
		storage.conversion = c
	}
	return kinds, storage, nil
}

// customKind is the Kind of one version of a CRD: unstructured objects,
// pruned, defaulted and validated by the version's structural schema.
func customKind(crd *apiextensionsv1.CustomResourceDefinition, v apiextensionsv1.CustomResourceDefinitionVersion,
	sv *apiextensions.CustomResourceValidation, subs *apiextensions.CustomResourceSubresources) (*Kind, error) {
	names := crd.Status.AcceptedNames
	if names.Plural == "" {
		names = crd.Spec.Names
	}
	cs, err := newCustomSchema(sv)
	if err != nil {
		return nil, err
	}
	columns := v.AdditionalPrinterColumns
	if len(columns) == 0 {
		columns = []apiextensionsv1.CustomResourceColumnDefinition{{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"}}
	}
	table, err := tableconvertor.New(columns)
	if err != nil {
		return nil, fmt.Errorf("additionalPrinterColumns: %w", err)
	}
	head, err := table.ConvertToTable(context.Background(), &unstructured.UnstructuredList{}, nil)
	if err != nil {
		return nil, fmt.Errorf("additionalPrinterColumns: %w", err)
	}
	k := &Kind{
		GVK:           schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: names.Kind},
		Resource:      names.Plural,
		Singular:      names.Singular,
		Namespaced:    crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
		ShortNames:    names.ShortNames,
		Categories:    names.Categories,
		HasGeneration: true,
		custom:        true,
		schema:        cs,
		terminating:   crd.DeletionTimestamp != nil,
		newObject:     func() runtime.Object { return &unstructured.Unstructured{Object: map[string]any{}} },
		newList:       func() runtime.Object { return &unstructured.UnstructuredList{Object: map[string]any{}} },
		columns:       head.ColumnDefinitions,
		cells: func(obj runtime.Object, _ time.Time) []any {
			t, err := table.ConvertToTable(context.Background(), obj, &metav1.TableOptions{NoHeaders: true})
			if err != nil || len(t.Rows) != 1 {
				return make([]any, len(head.ColumnDefinitions))
			}
			return t.Rows[0].Cells
		},
	}
	// selectableFields (spec.versions[].selectableFields) are field
	// selectors besides metadata.name and metadata.namespace.
	for _, sf := range v.SelectableFields {
		k.fieldNames = append(k.fieldNames, strings.TrimPrefix(sf.JSONPath, "."))
	}
	if len(k.fieldNames) > 0 {
		k.fields = func(obj runtime.Object) fields.Set {
			u := obj.(*unstructured.Unstructured)
			set := fields.Set{}
			for _, name := range k.fieldNames {
				v, ok, _ := unstructured.NestedFieldNoCopy(u.Object, strings.Split(name, ".")...)
				switch v.(type) {
				case string, bool, int64, float64:
					if ok {
						set[name] = fmt.Sprint(v)
					}
				}
			}
			return set
		}
	}
	var scale *apiextensions.CustomResourceSubresourceScale
	if sub := v.Subresources; sub != nil {
		k.HasStatus = sub.Status != nil
		if sub.Scale != nil {
			k.Scale = customScale(sub.Scale)
			if subs != nil {
				scale = subs.Scale
			}
		}
	}
	k.prepareForCreate = func(obj runtime.Object) {
		if k.HasStatus {
			delete(obj.(*unstructured.Unstructured).Object, "status")
		}
	}
	k.defaults = func(obj runtime.Object) { cs.pruneAndDefault(obj.(*unstructured.Unstructured), true) }
	k.readDefaults = func(obj runtime.Object) { cs.pruneAndDefault(obj.(*unstructured.Unstructured), false) }
	k.validate = func(obj runtime.Object) field.ErrorList {
		return cs.validate(obj.(*unstructured.Unstructured), nil, scale)
	}
	k.validateUpdate = func(obj, old runtime.Object) field.ErrorList {
		// validate reported what the object alone breaks; the rules
		// that compare with the old object (oldSelf) add the rest.
		seen := map[string]bool{}
		for _, e := range cs.validate(obj.(*unstructured.Unstructured), nil, scale) {
			seen[e.Error()] = true
		}
		var errs field.ErrorList
		for _, e := range cs.validate(obj.(*unstructured.Unstructured), old.(*unstructured.Unstructured), scale) {
			if !seen[e.Error()] {
				errs = append(errs, e)
			}
		}
		return errs
	}
	k.validateStatus = func(obj runtime.Object) field.ErrorList {
		return cs.validate(obj.(*unstructured.Unstructured), nil, scale)
	}
	return k, nil
}

// customSchema is the structural schema of one CRD version and the
// validators built from it (nil when the version has no schema).
type customSchema struct {
	structural *structuralschema.Structural
	validator  apiextensionsvalidation.SchemaValidator
	cel        *cel.Validator
}

func newCustomSchema(v *apiextensions.CustomResourceValidation) (*customSchema, error) {
	if v == nil || v.OpenAPIV3Schema == nil {
		return nil, nil
	}
	s, err := structuralschema.NewStructural(v.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	val, _, err := apiextensionsvalidation.NewSchemaValidator(v.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("schema validator: %w", err)
	}
	return &customSchema{structural: s, validator: val, cel: cel.NewValidator(s, true, celconfig.PerCallLimit)}, nil
}

// pruneAndDefault drops the fields the schema does not know (unless it
// preserves them), coerces metadata and fills the schema's defaults.
// rootMeta coerces the object's own metadata too (a write); an object
// read from the store had it coerced when it was written, and the
// coercion (a JSON round trip of the metadata) was ~45% of a LIST's CPU.
func (c *customSchema) pruneAndDefault(u *unstructured.Unstructured, rootMeta bool) {
	if c == nil {
		return
	}
	structuralpruning.PruneWithOptions(u.Object, c.structural, true, structuralschema.UnknownFieldPathOptions{})
	// Malformed embedded metadata is dropped, as kube-apiserver reads it.
	_ = schemaobjectmeta.Coerce(nil, u.Object, c.structural, rootMeta, true)
	structuraldefaulting.Default(u.Object, c.structural)
}

// validate checks u against the schema, list types, embedded object
// metadata and CEL rules (transition rules too when old is set).
func (c *customSchema) validate(u, old *unstructured.Unstructured, scale *apiextensions.CustomResourceSubresourceScale) field.ErrorList {
	var errs field.ErrorList
	if scale != nil {
		errs = append(errs, scaleErrors(u, scale)...)
	}
	if c == nil {
		return errs
	}
	ctx := context.Background()
	errs = append(errs, apiextensionsvalidation.ValidateCustomResource(nil, u.Object, c.validator)...)
	errs = append(errs, schemaobjectmeta.Validate(ctx, nil, u.Object, c.structural, false)...)
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, c.structural, u.Object)...)
	for _, e := range errs {
		if e.Type == field.ErrorTypeNotSupported || e.Type == field.ErrorTypeTypeInvalid ||
			e.Type == field.ErrorTypeRequired {
			// CEL rules are not run over a value of the wrong shape
			// (kube-apiserver's blocking errors).
			return errs
		}
	}
	var oldObj any
	if old != nil {
		oldObj = old.Object
	}
	celErrs, _ := c.cel.Validate(ctx, nil, c.structural, u.Object, oldObj, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

// scaleErrors checks the replica paths of the scale subresource.
func scaleErrors(u *unstructured.Unstructured, scale *apiextensions.CustomResourceSubresourceScale) field.ErrorList {
	var errs field.ErrorList
	for _, p := range []string{scale.SpecReplicasPath, scale.StatusReplicasPath} {
		n, _, err := unstructured.NestedInt64(u.Object, splitPath(p)...)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(field.NewPath(p), n, err.Error()))
		case n < 0 || n > 1<<31-1:
			errs = append(errs, field.Invalid(field.NewPath(p), n, "should be a non-negative 32-bit integer"))
		}
	}
	return errs
}

// customScale reads and sets the replica paths of a scale subresource.
func customScale(sc *apiextensionsv1.CustomResourceSubresourceScale) *ScaleRules {
	return &ScaleRules{
		Get: func(obj runtime.Object) (int32, int32, string) {
			u := obj.(*unstructured.Unstructured)
			spec, _, _ := unstructured.NestedInt64(u.Object, splitPath(sc.SpecReplicasPath)...)
			status, _, _ := unstructured.NestedInt64(u.Object, splitPath(sc.StatusReplicasPath)...)
			var sel string
			if sc.LabelSelectorPath != nil {
				sel, _, _ = unstructured.NestedString(u.Object, splitPath(*sc.LabelSelectorPath)...)
			}
			return int32(spec), int32(status), sel
		},
		Set: func(obj runtime.Object, replicas int32) {
			u := obj.(*unstructured.Unstructured)
			// The path was validated with the CRD; an error cannot happen
			// on a map the object owns.
			_ = unstructured.SetNestedField(u.Object, int64(replicas), splitPath(sc.SpecReplicasPath)...)
		},
		SpecReplicasPath: splitPath(sc.SpecReplicasPath),
	}
}

// splitPath turns ".spec.replicas" into [spec replicas].
func splitPath(p string) []string { return strings.Split(strings.TrimPrefix(p, "."), ".") }

// UnknownFields lists the paths of obj's fields a custom resource's schema
// does not know ("spec.replicaz"): pruned on write, refused under
// fieldValidation=Strict and warned about under Warn. obj is not changed.
func (k *Kind) UnknownFields(obj runtime.Object) []string {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || k.schema == nil {
		return nil
	}
	return structuralpruning.PruneWithOptions(runtime.DeepCopyJSON(u.Object), k.schema.structural, true,
		structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
}

// Terminating reports whether the kind is a custom resource whose CRD is
// being deleted: its objects are read and deleted, but no more created.
func (k *Kind) Terminating() bool { return k.terminating }

// Custom reports whether the kind is a custom resource (unstructured
// objects, defined by a CRD).
func (k *Kind) Custom() bool { return k.custom }

// unstructuredField returns the top-level key of an unstructured object
// that a typed kind's field name stands for ("Status" → "status").
func unstructuredField(name string) string { return lower(name[:1]) + name[1:] }

// copyUnstructuredField sets dst[name] to a copy of src[name], or removes
// it when src has none.
func copyUnstructuredField(dst, src *unstructured.Unstructured, name string) {
	key := unstructuredField(name)
	v, ok := src.Object[key]
	if !ok {
		delete(dst.Object, key)
		return
	}
	dst.Object[key] = runtime.DeepCopyJSONValue(v)
}

// unstructuredSpecEqual compares everything of two custom objects but
// metadata and status: what bumps a custom object's generation.
func unstructuredSpecEqual(a, b *unstructured.Unstructured) bool {
	strip := func(u *unstructured.Unstructured) map[string]any {
		m := make(map[string]any, len(u.Object))
		for k, v := range u.Object {
			if k != "metadata" && k != "status" && k != "apiVersion" && k != "kind" {
				m[k] = v
			}
		}
		return m
	}
	return apiequality.Semantic.DeepEqual(strip(a), strip(b))
}
