package apiserver

import (
	"bytes"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	openapi_v3 "github.com/google/gnostic-models/openapiv3"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-io/skiff/server/apiserver/openapi"
)

// Media types of the OpenAPI documents in protobuf (gnostic), as
// kube-apiserver serves them.
const (
	mediaOpenAPIV2Proto = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
	mediaOpenAPIV3Proto = "application/com.github.proto-openapi.spec.v3.v1.0+protobuf"
)

// openAPIDoc is one served document in its encodings.
type openAPIDoc struct {
	json, pb []byte
	etag     string
}

// openAPIDocs are built once, on first use, from the registry: /openapi/v2
// and one /openapi/v3/<group version> document per served group version.
type openAPIDocs struct {
	once     sync.Once
	err      error
	built    time.Time
	v2       openAPIDoc
	v3       map[string]*openAPIDoc
	v3Index  []byte
	v3IdxTag string
}

func (s *APIServer) openAPI() (*openAPIDocs, error) {
	d := s.openAPICurrent() // openapi_crd.go
	d.once.Do(func() {
		docs, err := openapi.Build(s.reg, GitVersion)
		if err != nil {
			s.log.Warn("custom resources left out of OpenAPI", "err", err)
		}
		d.built = s.now()
		b, err := json.Marshal(docs.V2)
		if err != nil {
			d.err = fmt.Errorf("openapi v2: %w", err)
			return
		}
		v2, err := openapi_v2.ParseDocument(b)
		if err != nil {
			d.err = fmt.Errorf("openapi v2: %w", err)
			return
		}
		pb, err := proto.Marshal(v2)
		if err != nil {
			d.err = fmt.Errorf("openapi v2 protobuf: %w", err)
			return
		}
		d.v2 = openAPIDoc{json: b, pb: pb, etag: etagOf(b)}
		d.v3 = map[string]*openAPIDoc{}
		index := struct {
			Paths map[string]struct {
				ServerRelativeURL string `json:"serverRelativeURL"`
			} `json:"paths"`
		}{Paths: map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		}{}}
		keys := make([]string, 0, len(docs.V3))
		for k := range docs.V3 {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, gv := range keys {
			b, err := json.Marshal(docs.V3[gv])
			if err != nil {
				d.err = fmt.Errorf("openapi v3 %s: %w", gv, err)
				return
			}
			doc := &openAPIDoc{json: b, etag: etagOf(b)}
			d.v3[gv] = doc
			index.Paths[gv] = struct {
				ServerRelativeURL string `json:"serverRelativeURL"`
			}{ServerRelativeURL: "/openapi/v3/" + gv + "?hash=" + url.QueryEscape(doc.etag)}
		}
		if d.v3Index, err = json.Marshal(index); err != nil {
			d.err = err
			return
		}
		d.v3IdxTag = etagOf(d.v3Index)
	})
	return d, d.err
}

func etagOf(b []byte) string { return fmt.Sprintf("%X", sha512.Sum512(b)) }

// serveOpenAPI serves /openapi/v2 (JSON or protobuf) and /openapi/v3 (the
// index and one document per group version).
func (s *APIServer) serveOpenAPI(req *request) {
	docs, err := s.openAPI()
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	p := req.info.Parts
	switch {
	case len(p) == 2 && p[1] == "v2":
		if acceptsProto(req.r) {
			s.serveDoc(req, mediaOpenAPIV2Proto, docs.v2.pb, docs.v2.etag, docs.built)
			return
		}
		s.serveDoc(req, "application/json", docs.v2.json, docs.v2.etag, docs.built)
	case len(p) == 2 && p[1] == "v3":
		s.serveDoc(req, "application/json", docs.v3Index, docs.v3IdxTag, docs.built)
	case len(p) > 2 && p[1] == "v3":
		gv := strings.Join(p[2:], "/")
		doc, ok := docs.v3[gv]
		if !ok {
			s.writeError(req.w, req.r, notFoundPath())
			return
		}
		if h := req.r.URL.Query().Get("hash"); h != "" {
			if h != doc.etag {
				http.Redirect(req.w, req.r, "/openapi/v3/"+gv+"?hash="+url.QueryEscape(doc.etag), http.StatusMovedPermanently)
				return
			}
			req.w.Header().Set("Cache-Control", "public, immutable")
			req.w.Header().Set("Expires", s.now().AddDate(1, 0, 0).UTC().Format(http.TimeFormat))
		}
		if acceptsProto(req.r) {
			pb, err := doc.protobuf()
			if err != nil {
				s.writeError(req.w, req.r, err)
				return
			}
			s.serveDoc(req, mediaOpenAPIV3Proto, pb, doc.etag, docs.built)
			return
		}
		s.serveDoc(req, "application/json", doc.json, doc.etag, docs.built)
	default:
		s.writeError(req.w, req.r, notFoundPath())
	}
}

var v3ProtoMu sync.Mutex

// protobuf encodes a v3 document with gnostic on first request.
func (d *openAPIDoc) protobuf() ([]byte, error) {
	v3ProtoMu.Lock()
	defer v3ProtoMu.Unlock()
	if d.pb != nil {
		return d.pb, nil
	}
	doc, err := openapi_v3.ParseDocument(d.json)
	if err != nil {
		return nil, fmt.Errorf("openapi v3 protobuf: %w", err)
	}
	if d.pb, err = proto.Marshal(doc); err != nil {
		return nil, fmt.Errorf("openapi v3 protobuf: %w", err)
	}
	return d.pb, nil
}

// acceptsProto reports whether the client prefers the protobuf document
// (it lists a protobuf media type before JSON).
func acceptsProto(r *http.Request) bool {
	for _, clause := range strings.Split(r.Header.Get("Accept"), ",") {
		mt := strings.TrimSpace(strings.SplitN(clause, ";", 2)[0])
		switch {
		case strings.Contains(mt, "protobuf"):
			return true
		case mt == "application/json" || mt == "*/*" || mt == "application/*":
			return false
		}
	}
	return false
}

func (s *APIServer) serveDoc(req *request, contentType string, body []byte, etag string, modified time.Time) {
	h := req.w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Etag", strconv.Quote(etag))
	h.Add("Vary", "Accept")
	http.ServeContent(req.w, req.r, "", modified, bytes.NewReader(body))
}
