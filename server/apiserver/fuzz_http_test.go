package apiserver_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// FuzzServeHTTP (issue 15): any request — method, path and query, media
// type, body — sent to the API server over an in-memory store is answered,
// never crashes it; the answer to a refused request is a Status. Watches
// are left out (they last until their timeout); the decoders they share
// with lists are FuzzListOptions'.
func FuzzServeHTTP(f *testing.F) {
	seeds := []struct {
		method uint8
		target string
		ct     uint8
		body   string
	}{
		{1, "/api/v1/namespaces/default/configmaps", 0, `{"metadata":{"name":"a"},"data":{"k":"v"}}`},
		{1, "/api/v1/namespaces/default/pods?fieldValidation=Strict", 1, "metadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: i\n"},
		{3, "/api/v1/namespaces/default/configmaps/a", 3, `[{"op":"copy","from":"/data","path":"/data/x"}]`},
		{3, "/api/v1/namespaces/default/configmaps/a", 4, `{"data":{"k":null}}`},
		{3, "/api/v1/namespaces/default/pods/p", 5, `{"spec":{"$setElementOrder/containers":[{"name":"c"}]}}`},
		{0, "/api/v1/namespaces/default/configmaps?labelSelector=a%3Db&limit=1", 0, ""},
		{0, "/apis/apps/v1/namespaces/default/deployments/d/scale", 0, ""},
		{4, "/api/v1/namespaces/default/configmaps?dryRun=All&propagationPolicy=Foreground", 0, `{"gracePeriodSeconds":0}`},
		{1, "/api/v1/namespaces/default/pods/p/eviction", 0, `{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p"}}`},
		{0, "/openapi/v3/apis/apps/v1", 0, ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, s.ct, []byte(s.body))
	}
	srv := apiservertest.NewServer(f, apiservertest.Options{})
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
	types := []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf",
		"application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json",
		"application/apply-patch+yaml", "", "text/plain; charset=\x00"}
	f.Fuzz(func(t *testing.T, mi uint8, target string, ci uint8, body []byte) {
		if !strings.HasPrefix(target, "/") || strings.Contains(strings.ToLower(target), "watch") {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, methods[int(mi)%len(methods)], "https://skiff"+target, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+apiservertest.Token)
		if ct := types[int(ci)%len(types)]; ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		srv.API.ServeHTTP(rec, req)
		if rec.Code >= 400 && req.Method != "HEAD" && strings.HasPrefix(req.URL.Path, "/api") &&
			!strings.Contains(rec.Body.String(), `"kind":"Status"`) && rec.Code != http.StatusNotFound {
			t.Fatalf("%s %s: %d without a Status: %.300s", req.Method, target, rec.Code, rec.Body.String())
		}
	})
}
