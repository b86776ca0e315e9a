package registry

import (
	"encoding/json"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// gadgetCRD has one version, so the internal form keeps its schema at the
// top (spec.validation), not in the version.
const gadgetCRD = `{"metadata": {"name": "gadgets.example.com"},
 "spec": {"group": "example.com", "scope": "Cluster",
  "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
  "versions": [{"name": "v1", "served": true, "storage": true,
   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
    "spec": {"type": "object",
     "x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "min must not exceed max"},
      {"rule": "self.max >= oldSelf.max", "message": "max may not shrink"}],
     "properties": {
      "min": {"type": "integer", "default": 0},
      "max": {"type": "integer", "default": 10},
      "port": {"x-kubernetes-int-or-string": true},
      "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
      "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}}]}}`

func gadgetKind(t *testing.T) *Kind {
	t.Helper()
	var crd apiextensionsv1.CustomResourceDefinition
	if err := json.Unmarshal([]byte(gadgetCRD), &crd); err != nil {
		t.Fatal(err)
	}
	r := New()
	if err := r.SetCustomResourceDefinitions([]*apiextensionsv1.CustomResourceDefinition{&crd}); err != nil {
		t.Fatal(err)
	}
	k, ok := r.Lookup("example.com", "v1", "gadgets")
	if !ok || !k.Custom() || k.Namespaced || k.StorageResource() != "example.com/gadgets" {
		t.Fatalf("lookup: %v %+v", ok, k)
	}
	return k
}

func gadget(spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": "Gadget",
		"metadata": map[string]any{"name": "g"}, "spec": spec, "junk": true}}
}

func TestCustomResourceSchemaPrunesDefaultsAndValidates(t *testing.T) {
	k := gadgetKind(t)
	g := gadget(map[string]any{"port": "http", "unknown": 1, "raw": map[string]any{"kept": "yes"}})
	k.PrepareForCreate(g)
	spec := g.Object["spec"].(map[string]any)
	if spec["min"] != int64(0) || spec["max"] != int64(10) {
		t.Fatalf("defaults: %v", spec)
	}
	if _, ok := spec["unknown"]; ok {
		t.Fatalf("unknown field kept: %v", spec)
	}
	if _, ok := g.Object["junk"]; ok {
		t.Fatalf("unknown top-level field kept: %v", g.Object)
	}
	if spec["raw"].(map[string]any)["kept"] != "yes" || spec["port"] != "http" {
		t.Fatalf("preserved fields: %v", spec)
	}
	if errs := k.Validate(g); len(errs) != 0 {
		t.Fatalf("valid gadget: %v", errs)
	}

	for _, tc := range []struct {
		spec map[string]any
		want string
	}{
		{map[string]any{"min": "one"}, "spec.min"},
		{map[string]any{"port": true}, "spec.port"},
		{map[string]any{"tags": []any{"a", "a"}}, "spec.tags[1]"},
		{map[string]any{"min": int64(5), "max": int64(1)}, "min must not exceed max"},
	} {
		g := gadget(tc.spec)
		k.PrepareForCreate(g)
		errs := k.Validate(g)
		if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), tc.want) {
			t.Errorf("spec %v: want an error naming %q, got %v", tc.spec, tc.want, errs)
		}
	}

	// The generation follows the spec, not metadata.
	old := gadget(map[string]any{})
	k.PrepareForCreate(old)
	upd := old.DeepCopy()
	upd.SetLabels(map[string]string{"a": "b"})
	k.PrepareForUpdate(upd, old)
	if upd.GetGeneration() != 1 {
		t.Fatalf("metadata change bumped the generation to %d", upd.GetGeneration())
	}
	upd.Object["spec"].(map[string]any)["max"] = int64(20)
	k.PrepareForUpdate(upd, old)
	if upd.GetGeneration() != 2 {
		t.Fatalf("spec change: generation %d", upd.GetGeneration())
	}

	// A transition rule (oldSelf) is checked on update only.
	upd.SetResourceVersion("7")
	smaller := upd.DeepCopy()
	smaller.Object["spec"].(map[string]any)["max"] = int64(5)
	if errs := k.Validate(smaller); len(errs) != 0 {
		t.Fatalf("create-time validation ran a transition rule: %v", errs)
	}
	if errs := k.ValidateUpdate(smaller, upd); len(errs) != 1 || !strings.Contains(errs[0].Error(), "max may not shrink") {
		t.Fatalf("transition rule: %v", errs)
	}
}
