package apiserver_test

import (
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// noxuCRD is the upstream field-validation conformance tests' CRD:
// cluster-scoped, spec preserving unknown fields, with an embedded
// resource (spec.template) whose metadata has a schema.
const noxuCRD = `{
 "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
 "metadata": {"name": "noxus.mygroup.example.com"},
 "spec": {
  "group": "mygroup.example.com", "scope": "Cluster",
  "names": {"plural": "noxus", "singular": "nonenglishnoxu", "kind": "WishIHadChosenNoxu", "listKind": "NoxuItemList"},
  "versions": [{"name": "v1beta1", "served": true, "storage": true,
   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
     "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {
      "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
      "spec": {"type": "object"}}},
     "foo": {"type": "string"},
     "cronSpec": {"type": "string"},
     "ports": {"type": "array", "x-kubernetes-list-map-keys": ["containerPort", "protocol"], "x-kubernetes-list-type": "map",
      "items": {"type": "object", "required": ["containerPort", "protocol"], "properties": {
       "containerPort": {"type": "integer", "format": "int32"}, "name": {"type": "string"}, "protocol": {"type": "string"}}}}}}}}}}]}}`

// TestFieldValidationCustomResourceApply follows the upstream conformance
// tests "should detect unknown metadata fields in both the root and
// embedded object of a CR" and "should detect duplicates in a CR when
// preserving unknown fields": a server-side apply (YAML) with
// fieldValidation=Strict is refused naming each field the CRD's schema
// does not declare (also in metadata, also in an embedded resource) and
// each duplicate key with its line, as kube-apiserver words them.
func TestFieldValidationCustomResourceApply(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	if r := e.do(http.MethodPost, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "application/json", []byte(noxuCRD)); r.code != http.StatusCreated {
		t.Fatalf("create CRD: %d %s", r.code, r.body)
	}
	apply := func(body string) rawResponse {
		return e.do(http.MethodPatch, "/apis/mygroup.example.com/v1beta1/noxus/mytest?fieldManager=field_validation_mgr&fieldValidation=Strict",
			"application/apply-patch+yaml", []byte(body))
	}
	r := apply(`
apiVersion: mygroup.example.com/v1beta1
kind: WishIHadChosenNoxu
metadata:
  name: mytest
  unknownMeta: unknown
spec:
  template:
    apiversion: foo/v1
    kind: Sub
    metadata:
        unknownSubMeta: unknown
        name: subobject
        namespace: default
  foo: foo1
  cronSpec: "* * * * */5"
  ports:
  - name: x
    containerPort: 80
    protocol: TCP`)
	for _, want := range []string{`.metadata.unknownMeta: field not declared in schema`, `.spec.template.metadata.unknownSubMeta: field not declared in schema`} {
		// kube-apiserver answers 500: the field manager's error is not a
		// Status.
		if r.code != http.StatusInternalServerError || !strings.Contains(string(r.body), want) {
			t.Errorf("unknown metadata fields: %d %s\nwant %q", r.code, r.body, want)
		}
	}

	r = apply(`
apiVersion: mygroup.example.com/v1beta1
kind: WishIHadChosenNoxu
metadata:
  name: mytest
spec:
  unknown: uk1
  foo: foo1
  foo: foo2
  cronSpec: "* * * * */5"
  ports:
  - name: x
    containerPort: 80
    protocol: TCP`)
	if want := `line 9: key \"foo\" already set in map`; r.code != http.StatusBadRequest || !strings.Contains(string(r.body), want) {
		t.Errorf("duplicate field: %d %s\nwant %q", r.code, r.body, want)
	}
}

// TestCustomResourceDefaultingFromStorage follows the upstream conformance
// test "custom resource defaulting for requests and from storage works":
// an object stored before its CRD got a default has it when read (get,
// list and watch), and loses it again when the default goes.
func TestCustomResourceDefaultingFromStorage(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	const crdPath = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
	if r := e.do(http.MethodPost, crdPath, "application/json", []byte(`{
 "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
 "metadata": {"name": "foos.example.com"},
 "spec": {"group": "example.com", "scope": "Cluster", "names": {"plural": "foos", "singular": "foo", "kind": "Foo"},
  "versions": [{"name": "v1", "served": true, "storage": true,
   "schema": {"openAPIV3Schema": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}}}]}}`)); r.code != http.StatusCreated {
		t.Fatalf("create CRD: %d %s", r.code, r.body)
	}
	dyn := dynamic.NewForConfigOrDie(e.srv.RESTConfig())
	foos := dyn.Resource(schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "foos"})
	newFoo := func(name string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": "Foo", "metadata": map[string]any{"name": name}}}
	}
	if _, err := foos.Create(e.ctx, newFoo("cr-1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	patchCRD := func(patch string) {
		t.Helper()
		if r := e.do(http.MethodPatch, crdPath+"/foos.example.com", "application/json-patch+json", []byte(patch)); r.code != http.StatusOK {
			t.Fatalf("patch CRD: %d %s", r.code, r.body)
		}
	}
	patchCRD(`[{"op":"add","path":"/spec/versions/0/schema/openAPIV3Schema/properties/a/default","value":"A"}]`)

	got, err := foos.Get(e.ctx, "cr-1", metav1.GetOptions{})
	if err != nil || got.Object["a"] != "A" {
		t.Fatalf("get of an object stored before the default: %v %v", err, got)
	}
	list, err := foos.List(e.ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 || list.Items[0].Object["a"] != "A" {
		t.Fatalf("list: %v %v", err, list)
	}
	w, err := foos.Watch(e.ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	ev := <-w.ResultChan()
	w.Stop()
	if u, ok := ev.Object.(*unstructured.Unstructured); !ok || u.Object["a"] != "A" {
		t.Fatalf("watch: %s %v", ev.Type, ev.Object)
	}

	created, err := foos.Create(e.ctx, newFoo("cr-2"), metav1.CreateOptions{})
	if err != nil || created.Object["a"] != "A" {
		t.Fatalf("create after the default: %v %v", err, created)
	}
	patchCRD(`[{"op":"remove","path":"/spec/versions/0/schema/openAPIV3Schema/properties/a/default"},
 {"op":"add","path":"/spec/versions/0/schema/openAPIV3Schema/properties/b/default","value":"B"}]`)
	for _, name := range []string{"cr-1", "cr-2"} {
		got, err := foos.Get(e.ctx, name, metav1.GetOptions{})
		if err != nil || got.Object["b"] != "B" {
			t.Fatalf("%s after the default of b: %v %v", name, err, got)
		}
		// cr-2 was stored with a; cr-1 never was.
		if _, has := got.Object["a"]; has != (name == "cr-2") {
			t.Fatalf("%s: a = %v", name, got.Object["a"])
		}
	}
}

// TestFieldValidationCustomResourceDuplicatesMultiVersion is the upstream
// conformance test "should detect duplicates in a CR when preserving
// unknown fields" as the suite sends it: the fixtures' two-version CRD
// (v1beta1 served, v1 stored) with the test's schema, the setup object
// created and deleted, then the YAML apply through v1beta1.
func TestFieldValidationCustomResourceDuplicatesMultiVersion(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	schema := `{"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
  "foo": {"type": "string"},
  "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
  "ports": {"type": "array", "x-kubernetes-list-map-keys": ["containerPort", "protocol"], "x-kubernetes-list-type": "map",
   "items": {"type": "object", "required": ["containerPort", "protocol"], "properties": {
    "containerPort": {"type": "integer", "format": "int32"}, "hostIP": {"type": "string"}, "hostPort": {"type": "integer", "format": "int32"},
    "name": {"type": "string"}, "protocol": {"type": "string"}}}}}}}}}`
	crd := `{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
 "metadata": {"name": "fooxyzas.mygroup.example.com"},
 "spec": {"group": "mygroup.example.com", "scope": "Cluster",
  "names": {"plural": "fooxyzas", "singular": "fooxyza", "kind": "fooxyza", "listKind": "fooxyzaList"},
  "versions": [{"name": "v1beta1", "served": true, "storage": false, "schema": ` + schema + `},
   {"name": "v1", "served": true, "storage": true, "schema": ` + schema + `}]}}`
	if r := e.do(http.MethodPost, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "application/json", []byte(crd)); r.code != http.StatusCreated {
		t.Fatalf("create CRD: %d %s", r.code, r.body)
	}
	setup := `{"apiVersion": "mygroup.example.com/v1beta1", "kind": "fooxyza", "metadata": {"name": "setup-instance"},
 "alpha": "foo_123", "beta": 10, "gamma": "bar", "delta": "hello", "epsilon": "foobar", "spec": {}}`
	if r := e.do(http.MethodPost, "/apis/mygroup.example.com/v1beta1/fooxyzas", "application/json", []byte(setup)); r.code != http.StatusCreated {
		t.Fatalf("create setup instance: %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodDelete, "/apis/mygroup.example.com/v1beta1/fooxyzas/setup-instance", "application/json", nil); r.code != http.StatusOK {
		t.Fatalf("delete setup instance: %d %s", r.code, r.body)
	}
	r := e.do(http.MethodPatch, "/apis/mygroup.example.com/v1beta1/fooxyzas/mytest?fieldManager=field_validation_mgr&fieldValidation=Strict",
		"application/apply-patch+yaml", []byte(`
apiVersion: mygroup.example.com/v1beta1
kind: fooxyza
metadata:
  name: mytest
spec:
  unknown: uk1
  foo: foo1
  foo: foo2
  cronSpec: "* * * * */5"
  ports:
  - name: x
    containerPort: 80
    protocol: TCP`))
	if want := `line 9: key \"foo\" already set in map`; !strings.Contains(string(r.body), want) {
		t.Errorf("duplicate field: %d %s\nwant %q", r.code, r.body, want)
	}
}
