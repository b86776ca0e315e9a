// Package openapi builds the OpenAPI v2 and v3 documents of the kinds the
// Skiff API serves by reflecting over their Go types (k8s.io/api): JSON
// names from the json tags, descriptions from the types' SwaggerDoc
// methods, merge strategies from the patchStrategy/patchMergeKey tags and
// x-kubernetes-group-version-kind from the scheme. kubectl uses them to
// validate manifests, compute apply patches and explain fields.
package openapi

import (
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// definitions collects the schemas of Go types by their kube-style names
// ("io.k8s.api.core.v1.Pod").
type definitions struct {
	defs spec.Definitions
	// gvks are the kinds each Go type is registered as in the scheme.
	gvks map[reflect.Type][]schema.GroupVersionKind
}

func newDefinitions(scheme *runtime.Scheme) *definitions {
	d := &definitions{defs: spec.Definitions{}, gvks: map[reflect.Type][]schema.GroupVersionKind{}}
	for gvk, t := range scheme.AllKnownTypes() {
		if gvk.Version == runtime.APIVersionInternal || strings.HasSuffix(gvk.Kind, "Options") && gvk.Group != "" {
			continue
		}
		d.gvks[t] = append(d.gvks[t], gvk)
	}
	for t := range d.gvks {
		sortGVKs(d.gvks[t])
	}
	return d
}

func sortGVKs(g []schema.GroupVersionKind) {
	less := func(a, b schema.GroupVersionKind) bool {
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Kind < b.Kind
	}
	for i := 1; i < len(g); i++ {
		for j := i; j > 0 && less(g[j], g[j-1]); j-- {
			g[j], g[j-1] = g[j-1], g[j]
		}
	}
}

// Name is the definition name of a Go type: the package path with its
// domain reversed, then the type name ("k8s.io/api/core/v1".Pod →
// "io.k8s.api.core.v1.Pod"), as kube-apiserver names them.
func Name(t reflect.Type) string {
	p := t.PkgPath()
	first, rest, _ := strings.Cut(p, "/")
	parts := strings.Split(first, ".")
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	name := strings.Join(parts, ".")
	if rest != "" {
		name += "." + strings.ReplaceAll(rest, "/", ".")
	}
	return name + "." + t.Name()
}

func refTo(name string) spec.Schema {
	return spec.Schema{SchemaProps: spec.SchemaProps{Ref: spec.MustCreateRef("#/definitions/" + name)}}
}

type swaggerDoccer interface{ SwaggerDoc() map[string]string }

type openAPITyped interface {
	OpenAPISchemaType() []string
	OpenAPISchemaFormat() string
}

var (
	rawExtensionType = reflect.TypeOf(runtime.RawExtension{})
	swaggerDocType   = reflect.TypeOf((*swaggerDoccer)(nil)).Elem()
	openAPITypedType = reflect.TypeOf((*openAPITyped)(nil)).Elem()
)

// add registers t's definition (and those it refers to) and returns its
// name.
func (d *definitions) add(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	name := Name(t)
	if _, done := d.defs[name]; done {
		return name
	}
	// Placeholder first: types refer to themselves (JSONSchemaProps-like).
	d.defs[name] = spec.Schema{}
	s := d.structSchema(t)
	if gvks := d.gvks[t]; len(gvks) > 0 {
		var ext []any
		for _, g := range gvks {
			ext = append(ext, map[string]any{"group": g.Group, "version": g.Version, "kind": g.Kind})
		}
		s.AddExtension("x-kubernetes-group-version-kind", ext)
	}
	d.defs[name] = s
	return name
}

// structSchema is the schema of a named type: a struct's object schema, or
// the primitive a type with custom JSON (Time, Quantity, IntOrString)
// declares.
func (d *definitions) structSchema(t reflect.Type) spec.Schema {
	var s spec.Schema
	if doc := swaggerDoc(t); doc != nil {
		s.Description = doc[""]
	}
	if t.Implements(openAPITypedType) {
		v := reflect.Zero(t).Interface().(openAPITyped)
		s.Type = v.OpenAPISchemaType()
		s.Format = v.OpenAPISchemaFormat()
		return s
	}
	if t == rawExtensionType || t.Kind() != reflect.Struct || t.NumField() == 0 {
		s.Type = spec.StringOrArray{"object"}
		return s
	}
	s.Type = spec.StringOrArray{"object"}
	s.Properties = map[string]spec.Schema{}
	d.addFields(&s, t)
	if len(s.Required) == 0 {
		s.Required = nil
	}
	return s
}

// addFields adds the JSON fields of struct t (inline ones flattened) to s.
func (d *definitions) addFields(s *spec.Schema, t reflect.Type) {
	doc := swaggerDoc(t)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") || (f.Anonymous && name == "") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				d.addFields(s, ft)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		p := d.fieldSchema(f.Type)
		if desc := doc[name]; desc != "" {
			p.Description = desc
		}
		if ps := f.Tag.Get("patchStrategy"); ps != "" {
			p.AddExtension("x-kubernetes-patch-strategy", ps)
		}
		if mk := f.Tag.Get("patchMergeKey"); mk != "" {
			p.AddExtension("x-kubernetes-patch-merge-key", mk)
		}
		s.Properties[name] = p
		if !strings.Contains(","+opts+",", ",omitempty,") && f.Type.Kind() != reflect.Pointer && name != "apiVersion" && name != "kind" {
			s.Required = append(s.Required, name)
		}
	}
}

// fieldSchema is the schema of a field of type t: a $ref for named
// structs, inline schemas for primitives, arrays and maps.
func (d *definitions) fieldSchema(t reflect.Type) spec.Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.PkgPath() != "" && (t.Kind() == reflect.Struct || t.Implements(openAPITypedType)) {
		return refTo(d.add(t))
	}
	switch t.Kind() {
	case reflect.String:
		return *spec.StringProperty()
	case reflect.Bool:
		return *spec.BoolProperty()
	case reflect.Int32, reflect.Int16, reflect.Int8, reflect.Uint16, reflect.Uint8, reflect.Int:
		return *spec.Int32Property()
	case reflect.Int64, reflect.Uint32, reflect.Uint64:
		return *spec.Int64Property()
	case reflect.Float64:
		return *spec.Float64Property()
	case reflect.Float32:
		return *spec.Float32Property()
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{"string"}, Format: "byte"}}
		}
		item := d.fieldSchema(t.Elem())
		return *spec.ArrayProperty(&item)
	case reflect.Map:
		v := d.fieldSchema(t.Elem())
		return *spec.MapProperty(&v)
	case reflect.Struct:
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{"object"}}}
	}
	// interface{} and the like: any JSON.
	return spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{"object"}}}
}

func swaggerDoc(t reflect.Type) map[string]string {
	if t.Implements(swaggerDocType) {
		return reflect.Zero(t).Interface().(swaggerDoccer).SwaggerDoc()
	}
	if reflect.PointerTo(t).Implements(swaggerDocType) {
		return reflect.New(t).Interface().(swaggerDoccer).SwaggerDoc()
	}
	return nil
}
