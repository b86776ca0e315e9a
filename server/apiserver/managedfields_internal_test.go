package apiserver

import (
	"testing"

	"k8s.io/client-go/applyconfigurations"

	"github.com/skiff-io/skiff/server/registry"
)

// TestTypeConverterCoversKinds: every stored kind has a schema in the
// built-in type converter, so its writes record managedFields.
func TestTypeConverterCoversKinds(t *testing.T) {
	reg := registry.New()
	tc := applyconfigurations.NewTypeConverter(reg.Scheme())
	for _, k := range reg.Kinds() {
		if k.Virtual {
			continue
		}
		obj := k.New()
		obj.GetObjectKind().SetGroupVersionKind(k.GVK)
		if _, err := tc.ObjectToTyped(obj); err != nil {
			t.Errorf("%s: %v", k.GVK, err)
		}
	}
}
