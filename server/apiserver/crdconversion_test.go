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

// convertHostPort is agnhost's crd-conversion-webhook, as the upstream
// conformance tests use it: stable.example.com v1 has hostPort
// ("host:port"), v2 host and port.
func convertHostPort(w http.ResponseWriter, r *http.Request) {
	var rev apiextensionsv1.ConversionReview
	if err := json.NewDecoder(r.Body).Decode(&rev); err != nil || rev.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	resp := &apiextensionsv1.ConversionResponse{UID: rev.Request.UID, Result: metav1.Status{Status: metav1.StatusSuccess}}
	for _, raw := range rev.Request.Objects {
		var u unstructured.Unstructured
		_ = json.Unmarshal(raw.Raw, &u.Object)
		switch from := u.GetAPIVersion(); {
		case from == "stable.example.com/v1" && rev.Request.DesiredAPIVersion == "stable.example.com/v2":
			if hp, ok := u.Object["hostPort"].(string); ok {
				delete(u.Object, "hostPort")
				host, port, _ := strings.Cut(hp, ":")
				u.Object["host"], u.Object["port"] = host, port
			}
		case from == "stable.example.com/v2" && rev.Request.DesiredAPIVersion == "stable.example.com/v1":
			host, hasHost := u.Object["host"].(string)
			port, hasPort := u.Object["port"].(string)
			if hasHost || hasPort {
				u.Object["hostPort"] = host + ":" + port
				delete(u.Object, "host")
				delete(u.Object, "port")
			}
		}
		u.SetAPIVersion(rev.Request.DesiredAPIVersion)
		b, _ := json.Marshal(u.Object)
		resp.ConvertedObjects = append(resp.ConvertedObjects, runtimeRaw(b))
	}
	rev.Request, rev.Response = nil, resp
	_ = json.NewEncoder(w).Encode(&rev)
}

// TestConversionWebhookNonHomogeneousList follows the upstream conformance
// tests "should be able to convert from CR v1 to CR v2" and "should be
// able to convert a non homogeneous list of CRs": one object stored at v1,
// the storage version moved to v2, another written at v1 (stored at v2);
// both read at either version are converted.
func TestConversionWebhookNonHomogeneousList(t *testing.T) {
	hook := httptest.NewTLSServer(http.HandlerFunc(convertHostPort))
	t.Cleanup(hook.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hook.Certificate().Raw})
	e := newEnv(t, apiservertest.Options{Admission: true})
	dyn := dynamic.NewForConfigOrDie(e.srv.RESTConfig())
	versions := func(storage string) []any {
		v := func(name string, props string) any {
			var out map[string]any
			_ = json.Unmarshal([]byte(`{"name": "`+name+`", "served": true, "storage": `+map[bool]string{true: "true", false: "false"}[name == storage]+`,
 "schema": {"openAPIV3Schema": {"type": "object", "properties": `+props+`}}}`), &out)
			return out
		}
		return []any{v("v1", `{"hostPort": {"type": "string"}}`), v("v2", `{"host": {"type": "string"}, "port": {"type": "string"}}`)}
	}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "e2e-test-crds.stable.example.com"},
		"spec": map[string]any{"group": "stable.example.com", "scope": "Namespaced", "preserveUnknownFields": false,
			"names": map[string]any{"plural": "e2e-test-crds", "singular": "e2e-test-crd", "kind": "E2eTestCrd", "listKind": "E2eTestCrdList"},
			"conversion": map[string]any{"strategy": "Webhook", "webhook": map[string]any{"conversionReviewVersions": []any{"v1", "v1beta1"},
				"clientConfig": map[string]any{"url": hook.URL + "/crdconvert", "caBundle": ca}}},
			"versions": versions("v1")}}}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(e.ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crs := func(v string) dynamic.ResourceInterface {
		return dyn.Resource(schema.GroupVersionResource{Group: "stable.example.com", Version: v, Resource: "e2e-test-crds"}).Namespace("default")
	}
	newCR := func(name string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "stable.example.com/v1", "kind": "E2eTestCrd",
			"metadata": map[string]any{"name": name}, "hostPort": "localhost:8080"}}
	}
	verify := func(u unstructured.Unstructured, v string) {
		t.Helper()
		want := map[string]any{"hostPort": "localhost:8080"}
		if v == "v2" {
			want = map[string]any{"host": "localhost", "port": "8080"}
		}
		for _, k := range []string{"hostPort", "host", "port"} {
			if u.Object[k] != want[k] {
				t.Errorf("%s at %s: %s = %v, want %v (%v)", u.GetName(), v, k, u.Object[k], want[k], u.Object)
			}
		}
	}
	if _, err := crs("v1").Create(e.ctx, newCR("cr-instance-1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := crs("v2").Get(e.ctx, "cr-instance-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	verify(*got, "v2")

	cur, err := crds.Get(e.ctx, "e2e-test-crds.stable.example.com", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Object["spec"].(map[string]any)["versions"] = versions("v2")
	if _, err := crds.Update(e.ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := crs("v1").Create(e.ctx, newCR("cr-instance-2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1", "v2"} {
		list, err := crs(v).List(e.ctx, metav1.ListOptions{})
		if err != nil || len(list.Items) != 2 {
			t.Fatalf("list at %s: %v %v", v, err, list)
		}
		for _, it := range list.Items {
			verify(it, v)
		}
	}
}
