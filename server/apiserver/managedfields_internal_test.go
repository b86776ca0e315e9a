package apiserver

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsac "k8s.io/apiextensions-apiserver/pkg/client/applyconfiguration"
	"k8s.io/client-go/applyconfigurations"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregatorac "k8s.io/kube-aggregator/pkg/client/applyconfiguration"

	"github.com/skiff-io/skiff/server/registry"
)

// TestTypeConverterCoversKinds: every stored kind has a schema in the
// built-in type converter (CustomResourceDefinitions: apiextensions'), so
// its writes record managedFields.
func TestTypeConverterCoversKinds(t *testing.T) {
	reg := registry.New()
	tc := applyconfigurations.NewTypeConverter(reg.Scheme())
	crds := apiextensionsac.NewTypeConverter(reg.Scheme())
	apiServices := aggregatorac.NewTypeConverter(reg.Scheme())
	checked := 0
	for _, k := range reg.Kinds() {
		if k.Virtual {
			continue
		}
		checked++
		obj := k.New()
		obj.GetObjectKind().SetGroupVersionKind(k.GVK)
		conv := tc
		if k.GVK.Group == apiextensionsv1.GroupName {
			conv = crds
		}
		if k.GVK.Group == apiregistrationv1.GroupName {
			conv = apiServices
		}
		if _, err := conv.ObjectToTyped(obj); err != nil {
			t.Errorf("%s: %v", k.GVK, err)
		}
	}
	if checked < 20 {
		t.Fatalf("only %d kinds checked", checked)
	}
}

// BenchmarkRecordCreate: the field manager's cost on a create of a
// ConfigMap with ~200 bytes of data (BenchmarkWrites' object).
func BenchmarkRecordCreate(b *testing.B) {
	s := &APIServer{reg: registry.New()}
	kind, _ := s.reg.Lookup("", "v1", "configmaps")
	ctx := withFieldWrite(context.Background(), fieldWrite{manager: "bench"})
	payload := strings.Repeat("x", 200)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("b-%d", i), Namespace: "default"}, Data: map[string]string{"p": payload}}
		if out := s.recordCreate(ctx, kind, cm); len(mustAccessor(out).GetManagedFields()) != 1 {
			b.Fatal("no managedFields")
		}
	}
}
