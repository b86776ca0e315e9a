package openapi

import (
	"encoding/json"
	"reflect"
	"testing"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/server/registry"
)

func TestBuildParsesAndResolves(t *testing.T) {
	d, err := Build(registry.New(), "v1.33.0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(d.V2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openapi_v2.ParseDocument(b); err != nil {
		t.Fatalf("gnostic cannot parse the v2 document: %v", err)
	}
	// Every $ref resolves.
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				name := ref[len("#/definitions/"):]
				if _, ok := d.V2.Definitions[name]; !ok {
					t.Errorf("dangling $ref %s", ref)
				}
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	walk(doc)
	pod := d.V2.Definitions["io.k8s.api.core.v1.Pod"]
	if gvk, ok := pod.Extensions["x-kubernetes-group-version-kind"]; !ok || pod.Description == "" {
		t.Fatalf("Pod: gvk %v, description %q", gvk, pod.Description)
	}
	c := d.V2.Definitions["io.k8s.api.core.v1.Container"]
	if len(c.Required) != 1 || c.Required[0] != "name" {
		t.Fatalf("Container required: %v", c.Required)
	}
	if q := d.V2.Definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"]; q.Type[0] != "string" {
		t.Fatalf("Quantity: %+v", q)
	}
	if len(d.V3) != len(registry.New().GroupVersions()) {
		t.Fatalf("%d v3 documents", len(d.V3))
	}
}

func TestName(t *testing.T) {
	if n := Name(reflect.TypeOf(corev1.Pod{})); n != "io.k8s.api.core.v1.Pod" {
		t.Fatal(n)
	}
}
