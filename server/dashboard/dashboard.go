// Package dashboard serves Skiff's web dashboard under /ui/ on the API's
// TLS listener: a static single-page application (TypeScript sources in
// web/, bundled by build/ into dist/, which is committed and embedded).
// The files hold no cluster data and are served to anyone; everything the
// page shows comes from the Kubernetes API with the user's bearer token.
package dashboard

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:generate go run ./build -web web -out dist

// Prefix is where the dashboard is mounted.
const Prefix = "/ui/"

// CSP allows only the bundle's own script, styles and API calls: no
// inline scripts or styles, no frames, no forms.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

//go:embed dist
var dist embed.FS

type file struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the embedded bundle.
type Handler struct {
	files map[string]file // by name under dist/, e.g. "app.js"
}

// New returns the handler for Prefix over the embedded bundle.
func New() (*Handler, error) {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil, fmt.Errorf("dashboard bundle: %w", err)
	}
	return newHandler(sub)
}

func newHandler(fsys fs.FS) (*Handler, error) {
	h := &Handler{files: map[string]file{}}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		h.files[p] = file{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard bundle: %w", err)
	}
	if _, ok := h.files["index.html"]; !ok {
		return nil, fmt.Errorf("dashboard bundle: no index.html")
	}
	return h, nil
}

// SetSecurityHeaders sets the headers every dashboard response carries.
func SetSecurityHeaders(hd http.Header) {
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// ServeHTTP answers GET and HEAD: a file of the bundle by its name, and
// index.html for any other path under Prefix (the page's router reads the
// URL: deep links). /ui redirects to /ui/.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	SetSecurityHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, Prefix)
	f, ok := h.files[name]
	isAsset := ok && name != "index.html"
	if !isAsset {
		f = h.files["index.html"]
	}
	hd := w.Header()
	hd.Set("Content-Type", f.ctype)
	hd.Set("ETag", f.etag)
	// Assets are revalidated by ETag (their names carry no hash), so a new
	// binary's bundle is picked up at once; 304 keeps that cheap.
	hd.Set("Cache-Control", "no-cache")
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Length", fmt.Sprint(len(f.body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(f.body)
}

func etagMatches(header, etag string) bool {
	for _, m := range strings.Split(header, ",") {
		m = strings.TrimSpace(m)
		if m == "*" || strings.TrimPrefix(m, "W/") == etag {
			return true
		}
	}
	return false
}
