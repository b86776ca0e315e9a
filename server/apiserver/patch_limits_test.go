package apiserver_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// Bounded patches (issue 15).

// patchWithin sends a patch and fails the test when it takes more than d.
func (e *env) patchWithin(d time.Duration, path, contentType string, body []byte) (rawResponse, time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, d)
	defer cancel()
	start := time.Now()
	r, err := send(ctx, e.srv.HTTP.Client(), "PATCH", e.srv.HTTP.URL+path, apiservertest.Token, bytes.NewReader(body), "Content-Type", contentType)
	took := time.Since(start)
	if err != nil {
		e.t.Fatalf("PATCH %s: %v after %s", path, err, took)
	}
	return r, took
}

// TestJSONPatchCopyBomb: a JSON patch of 17 copy operations, each copying
// the object's data into itself (a 1 kB patch that would make a 512 MB
// document), is refused with 422 at once, without building the document:
// the copies may add at most 3 MiB, as in kube-apiserver.
func TestJSONPatchCopyBomb(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "bomb"},
		Data:       map[string]string{"seed": strings.Repeat("x", 4096)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for i := 0; i < 17; i++ {
		ops = append(ops, fmt.Sprintf(`{"op":"copy","from":"/data","path":"/data/c%d"}`, i))
	}
	patch := []byte("[" + strings.Join(ops, ",") + "]")
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	r, took := e.patchWithin(20*time.Second, "/api/v1/namespaces/default/configmaps/bomb", "application/json-patch+json", patch)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	st := r.status(t, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid)
	if !strings.Contains(st.Message, "accumulated size increase of copy") || !strings.Contains(st.Message, "exceeding the limit 3145728") {
		t.Fatalf("message %q", st.Message)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d-byte patch of %d copies refused in %s, %d MB allocated", len(patch), len(ops), took, allocated>>20)
	if took > 2*time.Second || allocated > 128<<20 {
		t.Fatalf("the copy bomb took %s and %d MB", took, allocated>>20)
	}
	// Copies within the limit still apply.
	r, _ = e.patchWithin(10*time.Second, "/api/v1/namespaces/default/configmaps/bomb", "application/json-patch+json",
		[]byte(`[{"op":"copy","from":"/data/seed","path":"/data/copy"}]`))
	if r.code != http.StatusOK {
		t.Fatalf("a small copy: %d %s", r.code, r.body)
	}
}

// TestStrategicMergePatchWorkBounded: a 100-byte strategic merge patch
// that reorders a list of 8,000 finalizers (the library sorts it with
// linear lookups: seconds of CPU, minutes for longer lists) is refused
// with 413 before any merging; the same list patched as a JSON merge
// patch, and small strategic merge patches, apply.
func TestStrategicMergePatchWorkBounded(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	fin := make([]string, 8000)
	for i := range fin {
		fin[i] = fmt.Sprintf("example.com/f%d", i)
	}
	if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "long", Finalizers: fin},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/namespaces/default/configmaps/long"
	r, took := e.patchWithin(20*time.Second, path, "application/strategic-merge-patch+json",
		[]byte(`{"metadata":{"$setElementOrder/finalizers":["example.com/f1"],"finalizers":["example.com/f1"]}}`))
	if r.code != http.StatusRequestEntityTooLarge || !strings.Contains(string(r.body), "strategic merge patch would merge lists too long") {
		t.Fatalf("got %d %.300s after %s, want 413", r.code, r.body, took)
	}
	if took > 2*time.Second {
		t.Fatalf("refused after %s", took)
	}
	for _, p := range []struct{ ct, body string }{
		{"application/strategic-merge-patch+json", `{"metadata":{"labels":{"a":"b"}},"data":{"k":"v"}}`},
		{"application/merge-patch+json", `{"metadata":{"finalizers":["example.com/only"]}}`},
		{"application/strategic-merge-patch+json", `{"metadata":{"$setElementOrder/finalizers":["example.com/only","example.com/two"],"finalizers":["example.com/two"]}}`},
	} {
		if r, _ := e.patchWithin(10*time.Second, path, p.ct, []byte(p.body)); r.code != http.StatusOK {
			t.Fatalf("%s %s: %d %.300s", p.ct, p.body, r.code, r.body)
		}
	}
	cm, err := e.cs.CoreV1().ConfigMaps("default").Get(e.ctx, "long", metav1.GetOptions{})
	if err != nil || strings.Join(cm.Finalizers, ",") != "example.com/only,example.com/two" || cm.Labels["a"] != "b" {
		t.Fatalf("got %v %v, %v", cm.Finalizers, cm.Labels, err)
	}
}

// TestPatchResultBounded: a patch may not make an object larger than the
// body limit (64 KiB here) nor than it was: merge, strategic merge and
// JSON patches whose result would be are refused with 413, each within the
// body limit.
func TestPatchResultBounded(t *testing.T) {
	const limit = 64 << 10
	e := newEnv(t, apiservertest.Options{MaxBodyBytes: limit})
	if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "grow"},
		Data:       map[string]string{"a": strings.Repeat("a", 40<<10)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("b", 40<<10)
	path := "/api/v1/namespaces/default/configmaps/grow"
	for _, p := range []struct{ ct, body string }{
		{"application/merge-patch+json", `{"data":{"b":"` + big + `"}}`},
		{"application/strategic-merge-patch+json", `{"data":{"b":"` + big + `"}}`},
		{"application/json-patch+json", `[{"op":"add","path":"/data/b","value":"` + big + `"}]`},
	} {
		r, _ := e.patchWithin(10*time.Second, path, p.ct, []byte(p.body))
		if r.code != http.StatusRequestEntityTooLarge || !strings.Contains(string(r.body), "the patched object would be") {
			t.Fatalf("%s: got %d %.300s, want 413", p.ct, r.code, r.body)
		}
	}
	// Replacing the value with one of the same size is fine.
	if r, _ := e.patchWithin(10*time.Second, path, "application/merge-patch+json", []byte(`{"data":{"a":"`+big+`"}}`)); r.code != http.StatusOK {
		t.Fatalf("same-size patch: %d %.300s", r.code, r.body)
	}
}
