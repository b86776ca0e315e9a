package apiserver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"unicode"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsac "k8s.io/apiextensions-apiserver/pkg/client/applyconfiguration"
	"k8s.io/apiextensions-apiserver/pkg/controller/openapi/builder"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/applyconfigurations"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregatorac "k8s.io/kube-aggregator/pkg/client/applyconfiguration"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/skiff-io/skiff/server/registry"
)

// managedFields are recorded on every write as kube-apiserver records
// them: apimachinery's field manager (k8s.io/apimachinery/pkg/util/
// managedfields) compares the object before and after a create, update or
// patch and records the fields the request's manager changed (operation
// Update), and merges server-side apply patches (operation Apply), with
// the client-side-apply upgrade, the cap on Update managers and the
// version checks of NewDefaultFieldManager.
//
// The type converter of the built-in kinds is the structured schema of the
// k8s.io/api types that client-go ships at the same release
// (applyconfigurations.NewTypeConverter): the one kube-apiserver derives
// from the same types' generated OpenAPI, with every list type, map key
// (containers by name, ports by containerPort and protocol) and key
// default. Custom resources get theirs from their CRD's schema
// (customTypeConverter), or through SetTypeConverter.

// fieldWrite is what the field manager needs of a write request: its
// manager and subresource, and whether the object's managedFields were
// already computed (an apply).
type fieldWrite struct {
	manager     string
	subresource string
	applied     bool
}

type fieldWriteKey struct{}

func withFieldWrite(ctx context.Context, fw fieldWrite) context.Context {
	return context.WithValue(ctx, fieldWriteKey{}, fw)
}

func fieldWriteFrom(ctx context.Context) (fieldWrite, bool) {
	fw, ok := ctx.Value(fieldWriteKey{}).(fieldWrite)
	return fw, ok
}

// fieldManagers holds one field manager per kind and subresource, made on
// first use.
type fieldManagers struct {
	mu      sync.Mutex
	builtin managedfields.TypeConverter
	// apiextensions: the schema of CustomResourceDefinitions themselves;
	// apiregistration: that of APIServices (kube-aggregator's types).
	apiextensions   managedfields.TypeConverter
	apiregistration managedfields.TypeConverter
	converters      map[schema.GroupVersionKind]managedfields.TypeConverter
	managers        map[fieldManagerKey]*managedfields.FieldManager
	// custom marks the custom kinds among managers' keys, whose managers
	// are made again when the registry's CRDs change (customGen).
	custom    map[schema.GroupVersionKind]bool
	customGen uint64
}

type fieldManagerKey struct {
	gvk         schema.GroupVersionKind
	subresource string
}

// SetTypeConverter makes the field manager of kind gvk use tc (custom
// resources: managedfields.NewTypeConverter of the CRD's OpenAPI schema),
// instead of the built-in kinds' schema.
func (s *APIServer) SetTypeConverter(gvk schema.GroupVersionKind, tc managedfields.TypeConverter) {
	f := &s.fields
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.converters == nil {
		f.converters = map[schema.GroupVersionKind]managedfields.TypeConverter{}
	}
	f.converters[gvk] = tc
	for k := range f.managers {
		if k.gvk == gvk {
			delete(f.managers, k)
		}
	}
}

// fieldManager returns the field manager of kind for writes of the given
// subresource ("" for the object itself).
func (s *APIServer) fieldManager(kind *registry.Kind, subresource string) (*managedfields.FieldManager, error) {
	f := &s.fields
	f.mu.Lock()
	defer f.mu.Unlock()
	if gen := s.reg.CustomGeneration(); gen != f.customGen {
		// The CRDs changed: custom kinds' schemas may have too.
		for k, fm := range f.managers {
			if fm != nil && f.custom[k.gvk] {
				delete(f.managers, k)
			}
		}
		f.customGen = gen
	}
	key := fieldManagerKey{gvk: kind.GVK, subresource: subresource}
	if fm := f.managers[key]; fm != nil {
		return fm, nil
	}
	scheme := s.reg.Scheme()
	tc := f.converters[kind.GVK]
	if kind.Custom() {
		if f.custom == nil {
			f.custom = map[schema.GroupVersionKind]bool{}
		}
		f.custom[kind.GVK] = true
	}
	var (
		fm  *managedfields.FieldManager
		err error
	)
	switch {
	case kind.Custom():
		// Custom objects (unstructured): the CRD field manager with the
		// CRD's schema (SetTypeConverter, or built here from the CRD as
		// kube-apiserver does), else a deduced one, as kube-apiserver uses
		// for schemaless custom resources: maps merge by key, lists are
		// atomic.
		if tc == nil {
			tc = s.customTypeConverter(kind)
		}
		fm, err = managedfields.NewDefaultCRDFieldManager(tc, customConverter{}, customConverter{}, customConverter{},
			kind.GVK, kind.GVK.GroupVersion(), subresource, nil)
	default:
		if tc == nil {
			if f.builtin == nil {
				f.builtin = applyconfigurations.NewTypeConverter(scheme)
			}
			tc = f.builtin
			if kind.GVK.Group == apiextensionsv1.GroupName {
				if f.apiextensions == nil {
					f.apiextensions = apiextensionsac.NewTypeConverter(scheme)
				}
				tc = f.apiextensions
			}
			if kind.GVK.Group == apiregistrationv1.GroupName {
				if f.apiregistration == nil {
					f.apiregistration = aggregatorac.NewTypeConverter(scheme)
				}
				tc = f.apiregistration
			}
		}
		fm, err = managedfields.NewDefaultFieldManager(tc, runtime.UnsafeObjectConvertor(scheme), scheme, scheme,
			kind.GVK, kind.GVK.GroupVersion(), subresource, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("field manager of %s: %w", kind.GVK, err)
	}
	if f.managers == nil {
		f.managers = map[fieldManagerKey]*managedfields.FieldManager{}
	}
	f.managers[key] = fm
	return fm, nil
}

// scaleFieldManager returns the field manager of autoscaling/v1 Scale
// writes (the scale subresource of every kind that has one), as
// kube-apiserver makes it for that subresource.
func (s *APIServer) scaleFieldManager() (*managedfields.FieldManager, error) {
	f := &s.fields
	f.mu.Lock()
	defer f.mu.Unlock()
	key := fieldManagerKey{gvk: scaleGVK, subresource: registry.SubScale}
	if fm := f.managers[key]; fm != nil {
		return fm, nil
	}
	scheme := s.reg.Scheme()
	tc, err := managedfields.NewTypeConverter(scaleSchema(), false)
	if err != nil {
		return nil, fmt.Errorf("type converter of %s: %w", scaleGVK, err)
	}
	fm, err := managedfields.NewDefaultFieldManager(tc, runtime.UnsafeObjectConvertor(scheme), scheme, scheme,
		scaleGVK, scaleGVK.GroupVersion(), registry.SubScale, nil)
	if err != nil {
		return nil, fmt.Errorf("field manager of %s: %w", scaleGVK, err)
	}
	if f.managers == nil {
		f.managers = map[fieldManagerKey]*managedfields.FieldManager{}
	}
	f.managers[key] = fm
	return fm, nil
}

// scaleSchema is the structural schema of autoscaling/v1 Scale, which
// client-go's apply configurations (the built-in kinds' type converter)
// do not include: the type converter of scale writes is made from it.
// metadata keeps its fields (managedFields are taken out before).
func scaleSchema() map[string]*spec.Schema {
	obj := func(props map[string]spec.Schema) *spec.Schema {
		return &spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"object"}, Properties: props}}
	}
	typ := func(t string) spec.Schema { return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{t}}} }
	ref := func(name string) spec.Schema {
		return spec.Schema{SchemaProps: spec.SchemaProps{Ref: spec.MustCreateRef(name)}}
	}
	scale := obj(map[string]spec.Schema{
		"apiVersion": typ("string"),
		"kind":       typ("string"),
		"metadata":   ref("meta"),
		"spec":       ref("io.k8s.api.autoscaling.v1.ScaleSpec"),
		"status":     ref("io.k8s.api.autoscaling.v1.ScaleStatus"),
	})
	scale.Extensions = spec.Extensions{"x-kubernetes-group-version-kind": []any{
		map[string]any{"group": scaleGVK.Group, "version": scaleGVK.Version, "kind": scaleGVK.Kind},
	}}
	meta := obj(nil)
	meta.Extensions = spec.Extensions{"x-kubernetes-preserve-unknown-fields": true}
	return map[string]*spec.Schema{
		"io.k8s.api.autoscaling.v1.Scale":       scale,
		"io.k8s.api.autoscaling.v1.ScaleSpec":   obj(map[string]spec.Schema{"replicas": typ("integer")}),
		"io.k8s.api.autoscaling.v1.ScaleStatus": obj(map[string]spec.Schema{"replicas": typ("integer"), "selector": typ("string")}),
		"meta":                                  meta,
	}
}

// trackFields validates a write's fieldManager and puts the request's
// manager and subresource in its context, for recordFields. It answers the
// request (false) when the options are invalid, with kube-apiserver's 422.
func (s *APIServer) trackFields(req *request) bool {
	info := req.info
	q := req.r.URL.Query()
	manager := q.Get("fieldManager")
	var errs field.ErrorList
	var optsKind string
	switch info.Verb {
	case "create":
		optsKind = "CreateOptions"
		errs = metav1validation.ValidateCreateOptions(&metav1.CreateOptions{FieldManager: manager})
	case "update":
		optsKind = "UpdateOptions"
		errs = metav1validation.ValidateUpdateOptions(&metav1.UpdateOptions{FieldManager: manager})
	case "patch":
		optsKind = "PatchOptions"
		opts := &metav1.PatchOptions{FieldManager: manager}
		if q.Has("force") {
			force := q.Get("force") == "true"
			opts.Force = &force
		}
		errs = metav1validation.ValidatePatchOptions(opts, patchTypeOf(req))
	default:
		return true
	}
	if len(errs) > 0 {
		s.writeError(req.w, req.r, apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: optsKind}, "", errs))
		return false
	}
	if manager == "" {
		manager = managerFromUserAgent(req.r.UserAgent())
	}
	ctx := withFieldWrite(req.r.Context(), fieldWrite{manager: manager, subresource: info.Subresource})
	req.r = req.r.WithContext(ctx)
	return true
}

// managerFromUserAgent is the manager of a write without fieldManager, as
// kube-apiserver derives it: the user agent up to its first "/", without
// unprintable characters, at most 128 characters ("kubectl/v1.33.1 (…)"
// → "kubectl").
func managerFromUserAgent(ua string) string {
	first, _, _ := strings.Cut(ua, "/")
	var b strings.Builder
	for _, r := range first {
		if !unicode.IsPrint(r) {
			continue
		}
		if b.Len() >= 128 {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// recordCreate records the fields of a new object as its manager's
// (operation Update), unless an apply recorded them already.
func (s *APIServer) recordCreate(ctx context.Context, kind *registry.Kind, obj runtime.Object) runtime.Object {
	fw, ok := fieldWriteFrom(ctx)
	if !ok || fw.applied {
		return obj
	}
	fm, err := s.fieldManager(kind, "")
	if err != nil {
		s.log.Error("managedFields not recorded", "kind", kind.GVK, "err", err)
		return obj
	}
	live := kind.New()
	live.GetObjectKind().SetGroupVersionKind(kind.GVK)
	obj.GetObjectKind().SetGroupVersionKind(kind.GVK)
	return fm.UpdateNoErrors(live, obj, fw.manager)
}

// recordUpdate records the fields an update of old to obj (the kind's
// update rules applied to the request's object req) changed as its
// manager's, with the request's subresource. For an apply, whose
// managedFields the field manager computed, it keeps those of req: a
// status or ephemeral containers update starts from old.
func (s *APIServer) recordUpdate(ctx context.Context, kind *registry.Kind, obj, req, old runtime.Object) runtime.Object {
	fw, ok := fieldWriteFrom(ctx)
	if !ok {
		return obj
	}
	if fw.applied {
		if obj != req {
			mustAccessor(obj).SetManagedFields(mustAccessor(req).GetManagedFields())
		}
		return obj
	}
	fm, err := s.fieldManager(kind, fw.subresource)
	if err != nil {
		s.log.Error("managedFields not recorded", "kind", kind.GVK, "err", err)
		return obj
	}
	old = old.DeepCopyObject()
	old.GetObjectKind().SetGroupVersionKind(kind.GVK)
	obj.GetObjectKind().SetGroupVersionKind(kind.GVK)
	return fm.UpdateNoErrors(old, obj, fw.manager)
}

// customConverter is the object converter, defaulter and creater of the
// CRD field manager for custom objects: one stored form served in every
// version (conversion None), so converting sets the apiVersion only;
// defaults are applied by the schema before (registry).
type customConverter struct{}

func (customConverter) Convert(in, out, context any) error {
	return fmt.Errorf("custom objects convert only with ConvertToVersion")
}

func (customConverter) ConvertToVersion(in runtime.Object, gv runtime.GroupVersioner) (runtime.Object, error) {
	u, ok := in.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("custom object of type %T", in)
	}
	target, ok := gv.KindForGroupVersionKinds([]schema.GroupVersionKind{u.GroupVersionKind()})
	if !ok {
		return nil, fmt.Errorf("%s cannot be converted to %v", u.GroupVersionKind(), gv)
	}
	out := u.DeepCopy()
	out.SetGroupVersionKind(target)
	return out, nil
}

func (customConverter) ConvertFieldLabel(gvk schema.GroupVersionKind, label, value string) (string, string, error) {
	return label, value, nil
}

func (customConverter) Default(runtime.Object) {}

func (customConverter) New(gvk schema.GroupVersionKind) (runtime.Object, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u, nil
}

// customTypeConverter is the type converter of a custom kind, as
// kube-apiserver's CRD handler makes it: from the OpenAPI v3 schemas of
// every version of its CRD (apiextensions-apiserver's builder, which
// brings ObjectMeta's too), so that an apply is checked against the
// schema (".metadata.foo: field not declared in schema") and lists and
// maps merge by their x-kubernetes-list-type and map keys. Without a CRD
// or a schema that builds, the deduced converter.
func (s *APIServer) customTypeConverter(kind *registry.Kind) managedfields.TypeConverter {
	for _, crd := range s.reg.CustomResourceDefinitions() {
		if crd.Spec.Group != kind.GVK.Group || (crd.Spec.Names.Plural != kind.Resource && crd.Status.AcceptedNames.Plural != kind.Resource) {
			continue
		}
		specs := make([]*spec3.OpenAPI, 0, len(crd.Spec.Versions))
		for _, v := range crd.Spec.Versions {
			doc, err := builder.BuildOpenAPIV3(crd, v.Name, builder.Options{})
			if err != nil {
				s.log.Warn("custom resource schema: applies are not checked against it", "crd", crd.Name, "version", v.Name, "err", err)
				return managedfields.NewDeducedTypeConverter()
			}
			specs = append(specs, doc)
		}
		merged, err := builder.MergeSpecsV3(specs...)
		if err == nil && merged.Components != nil {
			var tc managedfields.TypeConverter
			if tc, err = managedfields.NewTypeConverter(merged.Components.Schemas, crd.Spec.PreserveUnknownFields); err == nil {
				return tc
			}
		}
		s.log.Warn("custom resource schema: applies are not checked against it", "crd", crd.Name, "err", err)
		break
	}
	return managedfields.NewDeducedTypeConverter()
}
