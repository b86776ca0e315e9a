package apiserver_test

import (
	"net/http"
	"strings"
	"testing"

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
