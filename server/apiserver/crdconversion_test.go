package apiserver_test

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// convertColor is a conversion webhook for example.com Gadgets: v1 has
// spec.color, v2 spec.colour. It counts its calls.
func convertColor(t *testing.T, calls *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var rev apiextensionsv1.ConversionReview
		if err := json.NewDecoder(r.Body).Decode(&rev); err != nil || rev.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		resp := &apiextensionsv1.ConversionResponse{UID: rev.Request.UID, Result: metav1.Status{Status: metav1.StatusSuccess}}
		for _, raw := range rev.Request.Objects {
			var u unstructured.Unstructured
			if err := json.Unmarshal(raw.Raw, &u.Object); err != nil {
				t.Errorf("object: %v", err)
				return
			}
			from, to := "color", "colour"
			if rev.Request.DesiredAPIVersion == "example.com/v1" {
				from, to = to, from
			}
			if v, ok, _ := unstructured.NestedString(u.Object, "spec", from); ok {
				unstructured.RemoveNestedField(u.Object, "spec", from)
				_ = unstructured.SetNestedField(u.Object, v, "spec", to)
			}
			u.SetAPIVersion(rev.Request.DesiredAPIVersion)
			b, _ := json.Marshal(u.Object)
			resp.ConvertedObjects = append(resp.ConvertedObjects, runtimeRaw(b))
		}
		rev.Request, rev.Response = nil, resp
		_ = json.NewEncoder(w).Encode(&rev)
	}
}

// A CRD with conversion strategy Webhook: objects are stored at the
// storage version (v1) and converted by the webhook, reached by URL and
// verified with the caBundle, for reads and writes at v2.
func TestCustomResourceConversionWebhook(t *testing.T) {
	var calls atomic.Int64
	hook := httptest.NewTLSServer(convertColor(t, &calls))
	t.Cleanup(hook.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hook.Certificate().Raw})
	e := newEnv(t, apiservertest.Options{Admission: true})
	dyn := dynamic.NewForConfigOrDie(e.srv.RESTConfig())
	crd := &unstructured.Unstructured{}
	if err := json.Unmarshal([]byte(`{
 "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
 "metadata": {"name": "gadgets.example.com"},
 "spec": {"group": "example.com", "scope": "Namespaced",
  "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
  "conversion": {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
   "clientConfig": {"url": "`+hook.URL+`/convert"}}},
  "versions": [
   {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "properties": {
    "spec": {"type": "object", "properties": {"color": {"type": "string"}}}}}}},
   {"name": "v2", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object", "properties": {
    "spec": {"type": "object", "properties": {"colour": {"type": "string"}}}}}}}]}}`), &crd.Object); err != nil {
		t.Fatal(err)
	}
	crd.Object["spec"].(map[string]any)["conversion"].(map[string]any)["webhook"].(map[string]any)["clientConfig"].(map[string]any)["caBundle"] = ca
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(e.ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gadgets := func(v string) dynamic.ResourceInterface {
		return dyn.Resource(schema.GroupVersionResource{Group: "example.com", Version: v, Resource: "gadgets"}).Namespace("default")
	}
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": "Gadget",
		"metadata": map[string]any{"name": "one"}, "spec": map[string]any{"color": "red"}}}
	if _, err := gadgets("v1").Create(e.ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 0 {
		t.Fatalf("a write at the storage version called the webhook %d times", calls.Load())
	}
	got, err := gadgets("v2").Get(e.ctx, "one", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get at v2: %v", err)
	}
	if got.GetAPIVersion() != "example.com/v2" || got.Object["spec"].(map[string]any)["colour"] != "red" {
		t.Fatalf("read at v2: %v", got.Object)
	}
	// Written at v2: stored at v1.
	obj2 := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v2", "kind": "Gadget",
		"metadata": map[string]any{"name": "two", "labels": map[string]any{"a": "b"}}, "spec": map[string]any{"colour": "blue"}}}
	created, err := gadgets("v2").Create(e.ctx, obj2, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create at v2: %v", err)
	}
	if created.Object["spec"].(map[string]any)["colour"] != "blue" || created.GetUID() == "" {
		t.Fatalf("created at v2: %v", created.Object)
	}
	list, err := gadgets("v2").List(e.ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 2 {
		t.Fatalf("list at v2: %v %v", list, err)
	}
	for _, it := range list.Items {
		if _, ok := it.Object["spec"].(map[string]any)["colour"]; !ok || it.GetAPIVersion() != "example.com/v2" {
			t.Fatalf("listed at v2: %v", it.Object)
		}
	}
	// An update at v2, and a watch at v2.
	w, err := gadgets("v2").Watch(e.ctx, metav1.ListOptions{ResourceVersion: list.GetResourceVersion()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	created.Object["spec"].(map[string]any)["colour"] = "green"
	if _, err := gadgets("v2").Update(e.ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update at v2: %v", err)
	}
	ev := <-w.ResultChan()
	if u, ok := ev.Object.(*unstructured.Unstructured); !ok || u.GetAPIVersion() != "example.com/v2" || u.Object["spec"].(map[string]any)["colour"] != "green" {
		t.Fatalf("watch at v2: %s %v", ev.Type, ev.Object)
	}
	// With the webhook gone, the storage version still reads (no
	// conversion needed) and v2 fails as kube-apiserver does.
	hook.Close()
	v1, err := gadgets("v1").Get(e.ctx, "two", metav1.GetOptions{})
	if err != nil || v1.Object["spec"].(map[string]any)["color"] != "green" || v1.GetLabels()["a"] != "b" {
		t.Fatalf("two at v1 (stored): %v %v", v1, err)
	}
	if _, err := gadgets("v2").Get(e.ctx, "two", metav1.GetOptions{}); err == nil || !strings.Contains(err.Error(), "conversion webhook") {
		t.Fatalf("v2 without the webhook: %v", err)
	}
}

func runtimeRaw(b []byte) runtime.RawExtension { return runtime.RawExtension{Raw: b} }
