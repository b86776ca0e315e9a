package openapi

import (
	"reflect"
	"sort"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kube-openapi/pkg/openapiconv"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/skiff-io/skiff/server/registry"
)

// Documents are the OpenAPI documents of a registry.
type Documents struct {
	// V2 is the whole API as Swagger 2.0 (/openapi/v2).
	V2 *spec.Swagger
	// V3 holds one OpenAPI 3.0 document per group version, keyed as
	// /openapi/v3 lists them ("api/v1", "apis/apps/v1").
	V3 map[string]*spec3.OpenAPI
}

// Build builds the documents of every kind in reg. version is the
// server's version (info.version). The error names custom resources left
// out (custom.go); the documents are complete otherwise.
func Build(reg *registry.Registry, version string) (*Documents, error) {
	all := newDefinitions(reg.Scheme())
	docs := &Documents{V3: map[string]*spec3.OpenAPI{}}
	v2 := newSwagger(version)
	for _, gv := range reg.GroupVersions() {
		defs := newDefinitions(reg.Scheme())
		sw := newSwagger(version)
		builtin := false
		for _, k := range reg.KindsIn(gv) {
			if k.Custom() {
				// Custom resources have no Go type to reflect over
				// (custom.go adds them).
				continue
			}
			builtin = true
			addKindPaths(sw.Paths, defs, k)
			addKindPaths(v2.Paths, all, k)
		}
		if !builtin {
			continue
		}
		sw.Definitions = defs.defs
		docs.V3[gvPath(gv)] = openapiconv.ConvertV2ToV3(sw)
	}
	v2.Definitions = all.defs
	docs.V2 = v2
	return docs, addCustomResources(docs, reg)
}

func gvPath(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return "api/" + gv.Version
	}
	return "apis/" + gv.Group + "/" + gv.Version
}

func newSwagger(version string) *spec.Swagger {
	return &spec.Swagger{SwaggerProps: spec.SwaggerProps{
		Swagger: "2.0",
		Info: &spec.Info{InfoProps: spec.InfoProps{
			Title:   "Kubernetes",
			Version: version,
		}},
		Paths:       &spec.Paths{Paths: map[string]spec.PathItem{}},
		Definitions: spec.Definitions{},
	}}
}

// Query parameters of the operations, as kube-apiserver declares them.
func queryParam(name, typ, desc string) spec.Parameter {
	return spec.Parameter{
		ParamProps:        spec.ParamProps{Name: name, In: "query", Description: desc},
		SimpleSchema:      spec.SimpleSchema{Type: typ},
		CommonValidations: spec.CommonValidations{UniqueItems: true},
	}
}

var (
	paramPretty          = queryParam("pretty", "string", "If 'true', then the output is pretty printed.")
	paramDryRun          = queryParam("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed")
	paramFieldManager    = queryParam("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes.")
	paramFieldValidation = queryParam("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn (default) - Strict")
	paramForce           = queryParam("force", "boolean", "Force is going to \"force\" Apply requests. Server-side apply is not supported yet.")
	paramGrace           = queryParam("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted.")
	paramPropagation     = queryParam("propagationPolicy", "string", "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'.")
	listParams           = []spec.Parameter{
		queryParam("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
		queryParam("continue", "string", "The continue option should be set when retrieving more results from the server."),
		queryParam("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
		queryParam("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
		queryParam("limit", "integer", "limit is a maximum number of responses to return for a list call."),
		queryParam("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
		queryParam("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
		queryParam("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
		queryParam("timeoutSeconds", "integer", "Timeout for the list/watch call."),
		queryParam("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
	}
)

func pathParam(name, desc string) spec.Parameter {
	return spec.Parameter{
		ParamProps:        spec.ParamProps{Name: name, In: "path", Description: desc, Required: true},
		SimpleSchema:      spec.SimpleSchema{Type: "string"},
		CommonValidations: spec.CommonValidations{UniqueItems: true},
	}
}

func bodyParam(s spec.Schema) spec.Parameter {
	return spec.Parameter{ParamProps: spec.ParamProps{Name: "body", In: "body", Required: true, Schema: &s}}
}

// operation makes one operation answering out.
func operation(id, desc, action string, gvk schema.GroupVersionKind, out spec.Schema, codes []int, params ...spec.Parameter) *spec.Operation {
	op := &spec.Operation{OperationProps: spec.OperationProps{
		ID:          id,
		Description: desc,
		Consumes:    []string{"*/*"},
		Produces:    []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf"},
		Schemes:     []string{"https"},
		Parameters:  params,
		Responses:   &spec.Responses{ResponsesProps: spec.ResponsesProps{StatusCodeResponses: map[int]spec.Response{}}},
	}}
	for _, c := range codes {
		out := out
		op.Responses.StatusCodeResponses[c] = spec.Response{ResponseProps: spec.ResponseProps{Description: httpText(c), Schema: &out}}
	}
	op.Responses.StatusCodeResponses[401] = spec.Response{ResponseProps: spec.ResponseProps{Description: "Unauthorized"}}
	op.AddExtension("x-kubernetes-action", action)
	op.AddExtension("x-kubernetes-group-version-kind", map[string]any{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind})
	return op
}

func httpText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	}
	return ""
}

// opID makes kube-style operation IDs: verb + version + kind.
func opID(verb string, k *registry.Kind, namespaced bool, suffix string) string {
	g := ""
	for _, part := range strings.Split(strings.TrimSuffix(k.GVK.Group, ".k8s.io"), ".") {
		if part != "" {
			g += strings.ToUpper(part[:1]) + part[1:]
		}
	}
	v := strings.ToUpper(k.GVK.Version[:1]) + k.GVK.Version[1:]
	ns := ""
	if namespaced {
		ns = "Namespaced"
	}
	if g == "" {
		g = "Core"
	}
	return verb + g + v + ns + k.GVK.Kind + suffix
}

// addKindPaths adds the collection, object and subresource paths of k.
func addKindPaths(paths *spec.Paths, d *definitions, k *registry.Kind) {
	if k.Virtual {
		addVirtualPaths(paths, d, k)
		return
	}
	obj := refTo(d.add(reflect.TypeOf(k.NewObject())))
	list := refTo(d.add(reflect.TypeOf(k.NewList())))
	status := refTo(d.add(reflect.TypeOf(metav1.Status{})))
	deleteOpts := refTo(d.add(reflect.TypeOf(metav1.DeleteOptions{})))
	patchSchema := refTo(patchDefinition(d))
	d.add(reflect.TypeOf(metav1.WatchEvent{}))

	prefix := "/" + gvPath(k.GVK.GroupVersion())
	coll := prefix + "/" + k.Resource
	nsParam := []spec.Parameter{}
	if k.Namespaced {
		coll = prefix + "/namespaces/{namespace}/" + k.Resource
		nsParam = append(nsParam, pathParam("namespace", "object name and auth scope, such as for teams and projects"))
		// The list across all namespaces.
		all := spec.PathItem{}
		all.Get = operation(opID("list", k, false, "ForAllNamespaces"), "list or watch objects of kind "+k.GVK.Kind, "list",
			k.GVK, list, []int{200}, listParams...)
		all.Parameters = []spec.Parameter{paramPretty}
		paths.Paths[prefix+"/"+k.Resource] = all
	}
	gvk := k.GVK
	c := spec.PathItem{}
	c.Parameters = append(append([]spec.Parameter{}, nsParam...), paramPretty)
	c.Get = operation(opID("list", k, k.Namespaced, ""), "list or watch objects of kind "+gvk.Kind, "list", gvk, list, []int{200}, listParams...)
	c.Post = operation(opID("create", k, k.Namespaced, ""), "create a "+gvk.Kind, "post", gvk, obj, []int{200, 201, 202},
		bodyParam(obj), paramDryRun, paramFieldManager, paramFieldValidation)
	c.Delete = operation(opID("deletecollection", k, k.Namespaced, ""), "delete collection of "+gvk.Kind, "deletecollection", gvk, status, []int{200},
		append([]spec.Parameter{bodyParam(deleteOpts), paramDryRun, paramGrace, paramPropagation}, listParams...)...)
	paths.Paths[coll] = c

	named := coll + "/{name}"
	nameParam := pathParam("name", "name of the "+gvk.Kind)
	o := spec.PathItem{}
	o.Parameters = append(append([]spec.Parameter{nameParam}, nsParam...), paramPretty)
	o.Get = operation(opID("read", k, k.Namespaced, ""), "read the specified "+gvk.Kind, "get", gvk, obj, []int{200})
	o.Put = operation(opID("replace", k, k.Namespaced, ""), "replace the specified "+gvk.Kind, "put", gvk, obj, []int{200, 201},
		bodyParam(obj), paramDryRun, paramFieldManager, paramFieldValidation)
	o.Patch = patchOperation(opID("patch", k, k.Namespaced, ""), "partially update the specified "+gvk.Kind, gvk, obj, patchSchema)
	o.Delete = operation(opID("delete", k, k.Namespaced, ""), "delete a "+gvk.Kind, "delete", gvk, status, []int{200, 202},
		bodyParam(deleteOpts), paramDryRun, paramGrace, paramPropagation)
	paths.Paths[named] = o

	for _, sub := range k.Subresources() {
		p := spec.PathItem{}
		p.Parameters = o.Parameters
		suffix := strings.ToUpper(sub.Name[:1]) + sub.Name[1:]
		switch sub.Name {
		case registry.SubStatus:
			p.Get = operation(opID("read", k, k.Namespaced, "Status"), "read status of the specified "+gvk.Kind, "get", gvk, obj, []int{200})
			p.Put = operation(opID("replace", k, k.Namespaced, "Status"), "replace status of the specified "+gvk.Kind, "put", gvk, obj, []int{200, 201},
				bodyParam(obj), paramDryRun, paramFieldManager, paramFieldValidation)
			p.Patch = patchOperation(opID("patch", k, k.Namespaced, "Status"), "partially update status of the specified "+gvk.Kind, gvk, obj, patchSchema)
		case registry.SubScale:
			scale := refTo(d.add(reflect.TypeOf(autoscalingv1.Scale{})))
			sgvk := autoscalingv1.SchemeGroupVersion.WithKind("Scale")
			p.Get = operation(opID("read", k, k.Namespaced, "Scale"), "read scale of the specified "+gvk.Kind, "get", sgvk, scale, []int{200})
			p.Put = operation(opID("replace", k, k.Namespaced, "Scale"), "replace scale of the specified "+gvk.Kind, "put", sgvk, scale, []int{200, 201},
				bodyParam(scale), paramDryRun, paramFieldManager, paramFieldValidation)
			p.Patch = patchOperation(opID("patch", k, k.Namespaced, "Scale"), "partially update scale of the specified "+gvk.Kind, sgvk, scale, patchSchema)
		case registry.SubBinding, registry.SubEviction, registry.SubToken:
			t := d.typeOf(sub.GVK)
			if t == nil {
				continue
			}
			body := refTo(d.add(t))
			p.Post = operation(opID("create", k, k.Namespaced, suffix), "create "+sub.Name+" of a "+gvk.Kind, "post", sub.GVK, body, []int{200, 201, 202},
				bodyParam(body), paramDryRun, paramFieldManager, paramFieldValidation)
		default:
			// Streaming (log, exec, attach, portforward): plain strings.
			str := *spec.StringProperty()
			p.Get = operation(opID("connect", k, k.Namespaced, suffix), "connect GET requests to "+sub.Name+" of "+gvk.Kind, "connect", sub.GVK, str, []int{200})
			if sub.Name != registry.SubLog {
				p.Post = operation(opID("connectPost", k, k.Namespaced, suffix), "connect POST requests to "+sub.Name+" of "+gvk.Kind, "connect", sub.GVK, str, []int{200})
			}
		}
		paths.Paths[named+"/"+sub.Name] = p
	}
}

func patchOperation(id, desc string, gvk schema.GroupVersionKind, out, patch spec.Schema) *spec.Operation {
	op := operation(id, desc, "patch", gvk, out, []int{200, 201}, bodyParam(patch), paramDryRun, paramFieldManager, paramFieldValidation, paramForce)
	op.Consumes = []string{"application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
	return op
}

// patchDefinition is meta/v1 Patch: any JSON document.
func patchDefinition(d *definitions) string {
	name := Name(reflect.TypeOf(metav1.Patch{}))
	if _, ok := d.defs[name]; !ok {
		d.defs[name] = spec.Schema{SchemaProps: spec.SchemaProps{
			Description: "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
			Type:        spec.StringOrArray{"object"},
		}}
	}
	return name
}

// typeOf finds the Go type registered as gvk.
func (d *definitions) typeOf(gvk schema.GroupVersionKind) reflect.Type {
	var types []reflect.Type
	for t, gvks := range d.gvks {
		for _, g := range gvks {
			if g == gvk {
				types = append(types, t)
			}
		}
	}
	sort.Slice(types, func(i, j int) bool { return Name(types[i]) < Name(types[j]) })
	if len(types) == 0 {
		return nil
	}
	return types[0]
}

// addVirtualPaths adds the paths of a kind that is not stored: a POST of
// the collection for the reviews, GETs for a read-only kind.
func addVirtualPaths(paths *spec.Paths, d *definitions, k *registry.Kind) {
	obj := refTo(d.add(reflect.TypeOf(k.NewObject())))
	gvk := k.GVK
	prefix := "/" + gvPath(gvk.GroupVersion())
	coll := prefix + "/" + k.Resource
	params := []spec.Parameter{paramPretty}
	if k.Namespaced {
		coll = prefix + "/namespaces/{namespace}/" + k.Resource
		params = append([]spec.Parameter{pathParam("namespace", "object name and auth scope, such as for teams and projects")}, params...)
	}
	c := spec.PathItem{}
	c.Parameters = params
	for _, v := range k.ResourceVerbs() {
		switch v {
		case "create":
			c.Post = operation(opID("create", k, k.Namespaced, ""), "create a "+gvk.Kind, "post", gvk, obj, []int{200, 201, 202},
				bodyParam(obj), paramDryRun, paramFieldManager, paramFieldValidation)
		case "list":
			list := refTo(d.add(reflect.TypeOf(k.NewList())))
			c.Get = operation(opID("list", k, k.Namespaced, ""), "list objects of kind "+gvk.Kind, "list", gvk, list, []int{200}, listParams...)
		case "get":
			o := spec.PathItem{}
			o.Parameters = append([]spec.Parameter{pathParam("name", "name of the "+gvk.Kind)}, params...)
			o.Get = operation(opID("read", k, k.Namespaced, ""), "read the specified "+gvk.Kind, "get", gvk, obj, []int{200})
			paths.Paths[coll+"/{name}"] = o
		}
	}
	paths.Paths[coll] = c
}
