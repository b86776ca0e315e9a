package dashboard

import (
	"bytes"
	"compress/gzip"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func newTestHandler(t *testing.T) *Handler {
	t.Helper()
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func serve(h http.Handler, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestHandlerHeadersAndDeepLinks(t *testing.T) {
	h := newTestHandler(t)
	index, err := fs.ReadFile(dist, "dist/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, ctype string
		body        []byte
	}{
		{"/ui/", "text/html; charset=utf-8", index},
		{"/ui/index.html", "text/html; charset=utf-8", index},
		{"/ui/nodes/node-1", "text/html; charset=utf-8", index},
		{"/ui/workloads/pods/default/web.1-abc", "text/html; charset=utf-8", index},
		{"/ui/login?next=/ui/nodes", "text/html; charset=utf-8", index},
		{"/ui/app.js", "text/javascript; charset=utf-8", nil},
		{"/ui/app.css", "text/css; charset=utf-8", nil},
	} {
		// No Authorization header: the static files are public.
		w := serve(h, http.MethodGet, tc.path, nil)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", tc.path, w.Code)
		}
		hd := w.Header()
		want := map[string]string{
			"Content-Security-Policy": CSP,
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"X-Frame-Options":         "DENY",
			"Content-Type":            tc.ctype,
			"Cache-Control":           "no-cache",
		}
		for k, v := range want {
			if got := hd.Get(k); got != v {
				t.Errorf("GET %s: %s = %q, want %q", tc.path, k, got, v)
			}
		}
		if !strings.Contains(CSP, "script-src 'self';") || strings.Contains(CSP, "unsafe-inline") {
			t.Errorf("CSP allows inline code: %s", CSP)
		}
		if tc.body != nil && !bytes.Equal(w.Body.Bytes(), tc.body) {
			t.Errorf("GET %s: not index.html", tc.path)
		}
		etag := hd.Get("ETag")
		if etag == "" {
			t.Fatalf("GET %s: no ETag", tc.path)
		}
		w2 := serve(h, http.MethodGet, tc.path, map[string]string{"If-None-Match": etag})
		if w2.Code != http.StatusNotModified || w2.Body.Len() != 0 {
			t.Errorf("GET %s with If-None-Match: %d, %d bytes", tc.path, w2.Code, w2.Body.Len())
		}
	}
	if w := serve(h, http.MethodHead, "/ui/app.js", nil); w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD: %d, %d bytes, length %q", w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
	}
	if w := serve(h, http.MethodPost, "/ui/", nil); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Content-Security-Policy") == "" {
		t.Errorf("POST: %d", w.Code)
	}
}

// The page loads its code from files only: no inline script or style in
// index.html (the CSP would block them).
func TestIndexHasNoInlineCode(t *testing.T) {
	b, err := fs.ReadFile(dist, "dist/index.html")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Contains(s, "<style") || strings.Contains(s, " style=") || strings.Contains(s, "<script>") || regexp.MustCompile(`\son[a-z]+=`).MatchString(s) {
		t.Fatalf("index.html has inline code:\n%s", s)
	}
	if !strings.Contains(s, `src="/ui/app.js"`) || !strings.Contains(s, `href="/ui/app.css"`) {
		t.Fatalf("index.html does not load the bundle:\n%s", s)
	}
}

// The committed bundle is what the sources give, byte for byte, and
// building twice gives the same bytes. Needs web/node_modules (make ui
// or npm ci); make ui-check runs npm ci first.
func TestBundleReproducible(t *testing.T) {
	if _, err := os.Stat("web/node_modules"); err != nil {
		t.Skip("web/node_modules missing (run npm ci in server/dashboard/web): the bundle is checked by make ui-check")
	}
	var outs []string
	for i := 0; i < 2; i++ {
		out := filepath.Join(t.TempDir(), "dist")
		cmd := exec.Command("go", "run", "./build", "-web", "web", "-out", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build: %v\n%s", err, b)
		}
		outs = append(outs, out)
	}
	for _, name := range []string{"index.html", "app.js", "app.css"} {
		committed, err := os.ReadFile(filepath.Join("dist", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, out := range outs {
			b, err := os.ReadFile(filepath.Join(out, name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, committed) {
				t.Fatalf("%s: the build gives %d bytes that differ from the committed dist/%s (%d bytes): run make ui and commit dist/", name, len(b), name, len(committed))
			}
		}
	}
	entries, err := os.ReadDir(outs[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("the build wrote %d files, want 3", len(entries))
	}
}

// TestBundleSize reports the bundle's gzipped size (docs/BENCHMARKS.md)
// and fails above the 300 KB budget.
func TestBundleSize(t *testing.T) {
	total, gz := 0, 0
	err := fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(dist, p)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if _, err := zw.Write(b); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		t.Logf("%s: %d bytes, %d gzipped", p, len(b), buf.Len())
		total += len(b)
		gz += buf.Len()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard bundle: %d bytes, %d gzipped", total, gz)
	if gz > 300<<10 {
		t.Fatalf("bundle is %d bytes gzipped, over the 300 KB budget", gz)
	}
}
