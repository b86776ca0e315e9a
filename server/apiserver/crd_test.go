package apiserver_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// widgetCRD is a namespaced CRD with two versions (conversion None), a
// schema with a default, an int-or-string, a map list, a CEL rule,
// status and scale subresources and printer columns.
const widgetCRD = `{
 "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
 "metadata": {"name": "widgets.example.com"},
 "spec": {
  "group": "example.com", "scope": "Namespaced",
  "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
  "versions": [
   {"name": "v1", "served": true, "storage": true,
    "selectableFields": [{"jsonPath": ".spec.size"}],
    "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
    "additionalPrinterColumns": [
     {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
     {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}],
    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
     "spec": {"type": "object",
      "x-kubernetes-validations": [{"rule": "self.replicas <= 10", "message": "at most 10 replicas"}],
      "properties": {
       "size": {"type": "string", "default": "small", "enum": ["small", "large"]},
       "replicas": {"type": "integer", "default": 1},
       "port": {"x-kubernetes-int-or-string": true},
       "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
       "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}}},
     "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "phase": {"type": "string"}}}}}}},
   {"name": "v1beta1", "served": true, "storage": false,
    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}`

func TestCustomResourceDefinitionServesCustomObjects(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	crdPath := "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
	r := e.do(http.MethodPost, crdPath, "application/json", []byte(widgetCRD))
	if r.code != http.StatusCreated {
		t.Fatalf("create CRD: %d %s", r.code, r.body)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := json.Unmarshal(r.body, &crd); err != nil {
		t.Fatal(err)
	}
	established, accepted := false, false
	for _, c := range crd.Status.Conditions {
		established = established || c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue
		accepted = accepted || c.Type == apiextensionsv1.NamesAccepted && c.Status == apiextensionsv1.ConditionTrue
	}
	if !established || !accepted || crd.Status.AcceptedNames.Kind != "Widget" || len(crd.Status.StoredVersions) != 1 {
		t.Fatalf("CRD status: %+v", crd.Status)
	}

	dyn := dynamic.NewForConfigOrDie(e.srv.RESTConfig())
	gvr := schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	w := dyn.Resource(gvr).Namespace("default")
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "example.com/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "one", "labels": map[string]any{"app": "a"}},
		"spec":     map[string]any{"port": "http", "unknown": "x", "free": map[string]any{"any": "thing"}},
		"status":   map[string]any{"phase": "dropped on create"},
		"extra":    "pruned",
	}}
	got, err := w.Create(e.ctx, obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create widget: %v", err)
	}
	spec := got.Object["spec"].(map[string]any)
	if spec["size"] != "small" || spec["replicas"] != int64(1) {
		t.Fatalf("defaults not applied: %v", spec)
	}
	if _, ok := spec["unknown"]; ok {
		t.Fatalf("unknown field not pruned: %v", spec)
	}
	if _, ok := got.Object["extra"]; ok {
		t.Fatalf("unknown top-level field not pruned: %v", got.Object)
	}
	if spec["free"].(map[string]any)["any"] != "thing" || spec["port"] != "http" {
		t.Fatalf("preserved fields lost: %v", spec)
	}
	if _, ok := got.Object["status"]; ok {
		t.Fatalf("status kept on create: %v", got.Object)
	}
	if got.GetGeneration() != 1 || got.GetUID() == "" {
		t.Fatalf("metadata: %v", got.Object["metadata"])
	}

	// Unknown fields: 400 under fieldValidation=Strict, a warning under Warn.
	r = e.do(http.MethodPost, "/apis/example.com/v1/namespaces/default/widgets?fieldValidation=Strict", "application/json",
		[]byte(`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"strict"},"spec":{"replicaz":1}}`))
	if st := r.status(t, http.StatusBadRequest, metav1.StatusReasonBadRequest); !strings.Contains(st.Message, `unknown field "spec.replicaz"`) {
		t.Fatalf("strict: %s", r.body)
	}
	r = e.do(http.MethodPost, "/apis/example.com/v1/namespaces/default/widgets", "application/json",
		[]byte(`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"warned"},"spec":{"replicaz":1}}`))
	if r.code != http.StatusCreated || !strings.Contains(r.header.Get("Warning"), `unknown field \"spec.replicaz\"`) {
		t.Fatalf("warn: %d %v %s", r.code, r.header, r.body)
	}
	if err := w.Delete(e.ctx, "warned", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}

	// Schema violations: 422 naming the field.
	bad := obj.DeepCopy()
	bad.SetName("bad")
	bad.Object["spec"] = map[string]any{"size": "huge"}
	_, err = w.Create(e.ctx, bad, metav1.CreateOptions{})
	assertInvalid(t, err, "spec.size")
	bad.Object["spec"] = map[string]any{"replicas": int64(11)}
	_, err = w.Create(e.ctx, bad, metav1.CreateOptions{})
	assertInvalid(t, err, "at most 10 replicas")
	bad.Object["spec"] = map[string]any{"ports": []any{map[string]any{"name": "a"}, map[string]any{"name": "a"}}}
	_, err = w.Create(e.ctx, bad, metav1.CreateOptions{})
	assertInvalid(t, err, "spec.ports[1]")

	// The other version serves the same object, apiVersion rewritten.
	beta, err := dyn.Resource(gvr.GroupResource().WithVersion("v1beta1")).Namespace("default").Get(e.ctx, "one", metav1.GetOptions{})
	if err != nil || beta.GetAPIVersion() != "example.com/v1beta1" {
		t.Fatalf("v1beta1 get: %v %v", err, beta)
	}

	// Lists carry the items' kind; label selectors work.
	list, err := w.List(e.ctx, metav1.ListOptions{LabelSelector: "app=a"})
	if err != nil || len(list.Items) != 1 || list.Items[0].GetKind() != "Widget" {
		t.Fatalf("list: %v %+v", err, list)
	}
	list, err = w.List(e.ctx, metav1.ListOptions{FieldSelector: "metadata.name=none"})
	if err != nil || len(list.Items) != 0 {
		t.Fatalf("field-selected list: %v %+v", err, list)
	}

	// selectableFields are field selectors.
	list, err = w.List(e.ctx, metav1.ListOptions{FieldSelector: "spec.size=small"})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("spec.size=small: %v %+v", err, list)
	}
	list, err = w.List(e.ctx, metav1.ListOptions{FieldSelector: "spec.size=large"})
	if err != nil || len(list.Items) != 0 {
		t.Fatalf("spec.size=large: %v %+v", err, list)
	}

	// Merge patch bumps the generation; strategic merge is refused.
	p, err := w.Patch(e.ctx, "one", types.MergePatchType, []byte(`{"spec":{"size":"large"}}`), metav1.PatchOptions{})
	if err != nil || p.GetGeneration() != 2 {
		t.Fatalf("merge patch: %v %v", err, p)
	}
	_, err = w.Patch(e.ctx, "one", types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/replicas","value":3}]`), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("json patch: %v", err)
	}
	r = e.do(http.MethodPatch, "/apis/example.com/v1/namespaces/default/widgets/one", "application/strategic-merge-patch+json", []byte(`{"spec":{"size":"small"}}`))
	if r.code != http.StatusUnsupportedMediaType {
		t.Fatalf("strategic merge patch: %d %s", r.code, r.body)
	}

	// Status subresource: only status changes, and it is validated.
	st, err := w.Patch(e.ctx, "one", types.MergePatchType, []byte(`{"spec":{"size":"small"},"status":{"phase":"Ready","replicas":3}}`), metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatalf("status patch: %v", err)
	}
	if st.Object["status"].(map[string]any)["phase"] != "Ready" || st.Object["spec"].(map[string]any)["size"] != "large" || st.GetGeneration() != 3 {
		t.Fatalf("status patch result: %v", st.Object)
	}
	_, err = w.Patch(e.ctx, "one", types.MergePatchType, []byte(`{"status":{"replicas":"many"}}`), metav1.PatchOptions{}, "status")
	assertInvalid(t, err, "status.replicas")

	// Scale subresource.
	r = e.do(http.MethodGet, "/apis/example.com/v1/namespaces/default/widgets/one/scale", "", nil)
	if r.code != http.StatusOK || !strings.Contains(string(r.body), `"replicas":3`) {
		t.Fatalf("scale: %d %s", r.code, r.body)
	}

	r = e.do(http.MethodPatch, "/apis/example.com/v1/namespaces/default/widgets/one/scale", "application/merge-patch+json", []byte(`{"spec":{"replicas":5}}`))
	if r.code != http.StatusOK {
		t.Fatalf("scale patch: %d %s", r.code, r.body)
	}
	if got, err := w.Get(e.ctx, "one", metav1.GetOptions{}); err != nil || got.Object["spec"].(map[string]any)["replicas"] != int64(5) {
		t.Fatalf("after scale: %v %v", err, got)
	}
	r = e.do(http.MethodPatch, "/apis/example.com/v1/namespaces/default/widgets/one/scale", "application/merge-patch+json", []byte(`{"spec":{"replicas":12}}`))
	if r.code != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "at most 10 replicas") {
		t.Fatalf("scale beyond the CEL rule: %d %s", r.code, r.body)
	}
	// A server-side apply of the Scale: the replicas and their owner
	// (with the scale subresource) land on the custom object; force, as
	// the merge patches above made their client the owner.
	r = e.do(http.MethodPatch, "/apis/example.com/v1/namespaces/default/widgets/one/scale?fieldManager=scaler&force=true", "application/apply-patch+yaml",
		[]byte(`{"apiVersion":"autoscaling/v1","kind":"Scale","spec":{"replicas":4}}`))
	if r.code != http.StatusOK {
		t.Fatalf("scale apply: %d %s", r.code, r.body)
	}
	got, err = w.Get(e.ctx, "one", metav1.GetOptions{})
	if err != nil || got.Object["spec"].(map[string]any)["replicas"] != int64(4) {
		t.Fatalf("after scale apply: %v %v", err, got)
	}
	scaler := false
	for _, m := range got.GetManagedFields() {
		scaler = scaler || m.Manager == "scaler" && m.Subresource == "scale" && m.APIVersion == "example.com/v1" && strings.Contains(string(m.FieldsV1.Raw), `"f:replicas"`)
	}
	if !scaler {
		t.Fatalf("managedFields after the scale apply: %+v", got.GetManagedFields())
	}
	if _, err := w.Patch(e.ctx, "one", types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	// Table with the printer columns.
	r = e.do(http.MethodGet, "/apis/example.com/v1/namespaces/default/widgets", "", nil, "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	var table metav1.Table
	if err := json.Unmarshal(r.body, &table); err != nil || len(table.Rows) != 1 {
		t.Fatalf("table: %v %s", err, r.body)
	}
	if len(table.ColumnDefinitions) != 3 || table.ColumnDefinitions[1].Name != "Size" ||
		table.Rows[0].Cells[1] != "large" || table.Rows[0].Cells[2] != float64(3) {
		t.Fatalf("table columns: %+v %+v", table.ColumnDefinitions, table.Rows[0].Cells)
	}

	// Discovery lists the resource with its short names and categories.
	r = e.do(http.MethodGet, "/apis/example.com/v1", "", nil)
	if r.code != http.StatusOK || !strings.Contains(string(r.body), `"shortNames":["wd"]`) || !strings.Contains(string(r.body), `"widgets/status"`) {
		t.Fatalf("discovery: %d %s", r.code, r.body)
	}
	r = e.do(http.MethodGet, "/apis/example.com", "", nil)
	if !strings.Contains(string(r.body), `"preferredVersion":{"groupVersion":"example.com/v1"`) {
		t.Fatalf("group discovery: %s", r.body)
	}

	// OpenAPI v2 and v3 describe the custom resource.
	r = e.do(http.MethodGet, "/openapi/v3", "", nil)
	if !strings.Contains(string(r.body), `"apis/example.com/v1"`) || !strings.Contains(string(r.body), `"apis/example.com/v1beta1"`) {
		t.Fatalf("openapi v3 index: %s", r.body)
	}
	r = e.do(http.MethodGet, "/openapi/v3/apis/example.com/v1", "", nil)
	if r.code != http.StatusOK || !strings.Contains(string(r.body), `"com.example.v1.Widget"`) || !strings.Contains(string(r.body), `"at most 10 replicas"`) {
		t.Fatalf("openapi v3 document: %d %.400s", r.code, r.body)
	}
	r = e.do(http.MethodGet, "/openapi/v2", "", nil, "Accept", "application/json")
	if r.code != http.StatusOK || !strings.Contains(string(r.body), `"com.example.v1.Widget"`) || !strings.Contains(string(r.body), `"io.k8s.api.core.v1.Pod"`) {
		t.Fatalf("openapi v2 document: %d", r.code)
	}

	// A deleted CRD waits for the leader's cleanup (not running here):
	// its objects are still served, but no new ones are created.
	r = e.do(http.MethodDelete, crdPath+"/widgets.example.com", "", nil)
	if r.code != http.StatusOK {
		t.Fatalf("delete CRD: %d %s", r.code, r.body)
	}
	if _, err := w.Get(e.ctx, "one", metav1.GetOptions{}); err != nil {
		t.Fatalf("get while terminating: %v", err)
	}
	fresh := obj.DeepCopy()
	fresh.SetName("late")
	_, err = w.Create(e.ctx, fresh, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "terminating") {
		t.Fatalf("create while terminating: %v", err)
	}
	if err := w.Delete(e.ctx, "one", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

func TestCustomResourceDefinitionValidation(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	crdPath := "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
	create := func(mutate func(string) string) rawResponse {
		return e.do(http.MethodPost, crdPath, "application/json", []byte(mutate(widgetCRD)))
	}
	for _, tc := range []struct {
		name, field string
		mutate      func(string) string
	}{
		{"bad name", "metadata.name", func(s string) string {
			return strings.Replace(s, `"name": "widgets.example.com"`, `"name": "gadgets.example.com"`, 1)
		}},
		{"non-structural", "spec.versions[0].schema.openAPIV3Schema.properties[status].type", func(s string) string {
			return strings.Replace(s, `"status": {"type": "object", `, `"status": {`, 1)
		}},
		{"bad CEL rule", "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule", func(s string) string {
			return strings.Replace(s, `self.replicas <= 10`, `self.replicas <=`, 1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := create(tc.mutate)
			st := r.status(t, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid)
			found := false
			for _, c := range st.Details.Causes {
				found = found || c.Field == tc.field
			}
			if !found {
				t.Fatalf("no cause for %s: %s", tc.field, r.body)
			}
		})
	}
	if r := create(func(s string) string { return s }); r.code != http.StatusCreated {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	// Another CRD of the group may not take the kind or a short name.
	other := strings.NewReplacer(`widgets.example.com`, `gizmos.example.com`, `"plural": "widgets"`, `"plural": "gizmos"`,
		`"singular": "widget"`, `"singular": "gizmo"`).Replace(widgetCRD)
	r := e.do(http.MethodPost, crdPath, "application/json", []byte(other))
	st := r.status(t, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid)
	if len(st.Details.Causes) < 2 || !strings.Contains(string(r.body), "spec.names.kind") || !strings.Contains(string(r.body), "spec.names.shortNames[0]") {
		t.Fatalf("conflicting names: %s", r.body)
	}
}

// assertInvalid checks err is a 422 whose message names want.
func assertInvalid(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("want 422 naming %q, got %v", want, err)
	}
	if se, ok := err.(interface{ Status() metav1.Status }); !ok || se.Status().Code != http.StatusUnprocessableEntity {
		t.Fatalf("want 422, got %v", err)
	}
}

// TestServerSideApplyCustomObjects: a CRD is applied server-side (its own
// schema), and so are custom objects (a deduced schema): create, a
// conflict between two managers naming the other manager and the field,
// force, and managedFields on a plain create.
func TestServerSideApplyCustomObjects(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	apply := func(path, manager, body string, force bool) rawResponse {
		q := "?fieldManager=" + manager
		if force {
			q += "&force=true"
		}
		return e.do(http.MethodPatch, path+q, "application/apply-patch+yaml", []byte(body))
	}
	r := apply("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com", "helm", widgetCRD, false)
	if r.code != http.StatusCreated || !strings.Contains(string(r.body), `"manager":"helm"`) {
		t.Fatalf("apply the CRD: %d %s", r.code, r.body)
	}
	const obj = "/apis/example.com/v1/namespaces/default/widgets/ssa"
	r = apply(obj, "alice", `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"ssa"},"spec":{"replicas":2,"free":{"a":"1"}}}`, false)
	if r.code != http.StatusCreated || !strings.Contains(string(r.body), `"manager":"alice"`) || !strings.Contains(string(r.body), `"operation":"Apply"`) {
		t.Fatalf("apply a custom object: %d %s", r.code, r.body)
	}
	r = apply(obj, "bob", `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"ssa"},"spec":{"replicas":3}}`, false)
	if r.code != http.StatusConflict || !strings.Contains(string(r.body), "alice") || !strings.Contains(string(r.body), ".spec.replicas") {
		t.Fatalf("a second manager's apply: %d %s, want 409 naming alice and .spec.replicas", r.code, r.body)
	}
	r = apply(obj, "bob", `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"ssa"},"spec":{"replicas":3}}`, true)
	if r.code != http.StatusOK || !strings.Contains(string(r.body), `"replicas":3`) || !strings.Contains(string(r.body), `"a":"1"`) {
		t.Fatalf("forced apply: %d %s", r.code, r.body)
	}
	r = e.do(http.MethodPost, "/apis/example.com/v1/namespaces/default/widgets?fieldManager=carol", "application/json",
		[]byte(`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"plain"},"spec":{"replicas":1}}`))
	if r.code != http.StatusCreated || !strings.Contains(string(r.body), `"manager":"carol"`) || !strings.Contains(string(r.body), `"operation":"Update"`) {
		t.Fatalf("create a custom object: %d %s", r.code, r.body)
	}
}
