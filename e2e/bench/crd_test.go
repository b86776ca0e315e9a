package bench

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Issue 16's benchmarks: custom objects against ConfigMaps of the same
// size (create throughput and LIST latency of 10,000 of each), and the
// latency one validating webhook adds to a write.

var blobGVR = schema.GroupVersionResource{Group: "bench.skiff.io", Version: "v1", Resource: "blobs"}

// BenchmarkCustomObjects: SKIFF_BENCH_OBJECTS (10,000) ConfigMaps and as
// many custom objects with the same data (~200 B), created by 32 JSON
// clients, then SKIFF_BENCH_LISTS LISTs of each, alternated.
func BenchmarkCustomObjects(b *testing.B) {
	n := envInt("SKIFF_BENCH_OBJECTS", 10000)
	reps := envInt("SKIFF_BENCH_LISTS", 30)
	m, _ := startMaster(b, "crd")
	ctx := context.Background()
	cfg := m.RESTConfig() // JSON: custom objects have no protobuf form
	cs := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	createBlobCRD(b, ctx, m.RESTConfig())

	payload := strings.Repeat("x", 200)
	t0 := time.Now()
	fill(b, n, func(i int) error {
		_, err := cs.CoreV1().ConfigMaps("bench").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%05d", i), Labels: map[string]string{"app": "bench"}},
			Data:       map[string]string{"payload": payload},
		}, metav1.CreateOptions{})
		return err
	})
	cmTime := time.Since(t0)
	t0 = time.Now()
	blobs := dyn.Resource(blobGVR).Namespace("bench")
	wait := profileMaster(b, m, "create-custom-objects", 4*time.Second)
	fill(b, n, func(i int) error {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "bench.skiff.io/v1", "kind": "Blob",
			"metadata": map[string]any{"name": fmt.Sprintf("blob-%05d", i), "labels": map[string]any{"app": "bench"}},
			"data":     map[string]any{"payload": payload},
		}}
		_, err := blobs.Create(ctx, u, metav1.CreateOptions{})
		return err
	})
	blobTime := time.Since(t0)
	wait()
	cmRate, blobRate := float64(n)/cmTime.Seconds(), float64(n)/blobTime.Seconds()
	fmt.Printf("crd: created %d ConfigMaps in %s (%.0f/s), %d custom objects in %s (%.0f/s): %.2f of the ConfigMaps' rate\n",
		n, cmTime.Round(time.Millisecond), cmRate, n, blobTime.Round(time.Millisecond), blobRate, blobRate/cmRate)
	b.ReportMetric(blobRate/cmRate, "create-ratio")

	hc := m.HTTPClient()
	urls := map[string]string{
		"configmaps":     m.URL() + "/api/v1/namespaces/bench/configmaps",
		"custom-objects": m.URL() + "/apis/bench.skiff.io/v1/namespaces/bench/blobs",
	}
	lat := map[string][]time.Duration{}
	size := map[string]int64{}
	for _, what := range []string{"configmaps", "custom-objects"} {
		// SKIFF_BENCH_PPROF_DIR: a CPU profile of 5 s of LISTs of each.
		wait := profileMaster(b, m, "list-"+what, 6*time.Second)
		for end := time.Now().Add(6 * time.Second); os.Getenv("SKIFF_BENCH_PPROF_DIR") != "" && time.Now().Before(end); {
			resp, err := hc.Get(urls[what])
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		wait()
	}
	for i := 0; i < reps; i++ {
		for _, what := range []string{"configmaps", "custom-objects"} {
			start := time.Now()
			resp, err := hc.Get(urls[what])
			if err != nil {
				b.Fatal(err)
			}
			nb, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("list %s: %d %v", what, resp.StatusCode, err)
			}
			lat[what] = append(lat[what], time.Since(start))
			size[what] = nb
		}
	}
	for _, what := range []string{"configmaps", "custom-objects"} {
		fmt.Printf("crd: list %d %s: %.1f MiB, p50=%.0fms p99=%.0fms over %d lists\n", n, what,
			float64(size[what])/(1<<20), ms(percentile(lat[what], 0.5)), ms(percentile(lat[what], 0.99)), reps)
	}
	ratio := float64(percentile(lat["custom-objects"], 0.5)) / float64(percentile(lat["configmaps"], 0.5))
	fmt.Printf("crd: list p50 of custom objects / ConfigMaps = %.2f\n", ratio)
	b.ReportMetric(ratio, "list-p50-ratio")
}

// createBlobCRD creates the namespaced Blob CRD (a data map of strings,
// like a ConfigMap's) and waits until it is served.
func createBlobCRD(b *testing.B, ctx context.Context, cfg *rest.Config) {
	b.Helper()
	ext := apiextensionsclient.NewForConfigOrDie(cfg)
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "blobs.bench.skiff.io"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "bench.skiff.io",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "blobs", Singular: "blob", Kind: "Blob", ListKind: "BlobList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"data": {Type: "object", AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Schema: &str}},
					},
				}},
			}},
		},
	}
	if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(cfg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := dyn.Resource(blobGVR).Namespace("bench").List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the Blob CRD is not served after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkWebhookLatency: SKIFF_BENCH_WRITES (1,000) sequential ConfigMap
// creates in a namespace no webhook matches and as many in one a
// validating webhook (over loopback TLS, in the benchmark process)
// matches, alternated: the latency the webhook adds, p50 and p99.
func BenchmarkWebhookLatency(b *testing.B) {
	n := envInt("SKIFF_BENCH_WRITES", 1000)
	m, _ := startMaster(b, "webhook")
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(m.RESTConfig())

	var calls atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&rev); err != nil || rev.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		rev.Response = &admissionv1.AdmissionResponse{UID: rev.Request.UID, Allowed: true}
		rev.Request = nil
		_ = json.NewEncoder(w).Encode(&rev)
	}))
	b.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	for _, ns := range []string{"hooked"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"webhook": "on"}}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	fail, none, timeout := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone, int32(5)
	_, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         "bench.skiff.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &srv.URL, CABundle: ca},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
			}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"webhook": "on"}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	payload := strings.Repeat("x", 200)
	create := func(ns string, i int) time.Duration {
		start := time.Now()
		_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%05d", i)},
			Data:       map[string]string{"payload": payload},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatalf("create in %s: %v", ns, err)
		}
		return time.Since(start)
	}
	// The webhook must be in force before the figures count.
	deadline := time.Now().Add(30 * time.Second)
	for served := false; !served; {
		if time.Now().After(deadline) {
			b.Fatal("the webhook was not called within 30s")
		}
		before := calls.Load()
		if _, err := cs.CoreV1().ConfigMaps("hooked").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "warm-"},
		}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		served = calls.Load() > before
	}
	var plain, hooked []time.Duration
	for i := 0; i < n; i++ {
		plain = append(plain, create("bench", i))
		hooked = append(hooked, create("hooked", i))
	}
	p50, p99 := percentile(hooked, 0.5)-percentile(plain, 0.5), percentile(hooked, 0.99)-percentile(plain, 0.99)
	fmt.Printf("webhook: %d creates each, no webhook p50=%.2fms p99=%.2fms, one webhook p50=%.2fms p99=%.2fms: added p50=%.2fms p99=%.2fms\n",
		n, ms(percentile(plain, 0.5)), ms(percentile(plain, 0.99)), ms(percentile(hooked, 0.5)), ms(percentile(hooked, 0.99)), ms(p50), ms(p99))
	b.ReportMetric(ms(p50), "added-p50-ms")
	b.ReportMetric(ms(p99), "added-p99-ms")
}
