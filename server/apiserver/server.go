// Package apiserver serves the Kubernetes REST API over the Skiff store:
// discovery, CRUD, status subresources, lists with selectors and
// pagination, watches, tables, and Kubernetes-shaped errors.
package apiserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/audit"

	"github.com/skiff-io/skiff/server/admission"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/registry"
)

// Version is the Kubernetes version Skiff reports at /version.
const (
	VersionMajor = "1"
	VersionMinor = "33"
	GitVersion   = "v1.33.0-skiff"
)

// MaxBodyBytes is the largest request body accepted (as kube-apiserver:
// 3 MiB); larger ones get 413.
const MaxBodyBytes = 3 << 20

// Config configures an APIServer. Store, Authenticator and Authorizer are
// required.
type Config struct {
	Store         Store
	Authenticator Authenticator
	Authorizer    Authorizer
	// Registry of served kinds (registry.New() if nil).
	Registry *registry.Registry
	Logger   *slog.Logger
	// Now is the clock for timestamps and table ages (time.Now if nil).
	Now func() time.Time
	// BookmarkIdle is how long a watch that asked for bookmarks may stay
	// silent before it gets one (5s if 0); BookmarkMax bounds the time
	// between bookmarks (1m if 0).
	BookmarkIdle time.Duration
	BookmarkMax  time.Duration
	// MaxBodyBytes overrides MaxBodyBytes (tests).
	MaxBodyBytes int64
	// KubeletTransport reaches the agents' kubelet servers, to which
	// pods/log, exec, attach and portforward are proxied (proxy.go); nil
	// answers them 503.
	KubeletTransport http.RoundTripper
	// Admission runs on creates and updates (admission.go); nil admits
	// everything.
	Admission Admission
	// ServiceAccountTokens signs the tokens of serviceaccounts/<name>/token
	// (handler_token.go); nil answers it 503.
	ServiceAccountTokens TokenIssuer
	// ComponentStatuses answers componentstatuses (nil: an empty list).
	ComponentStatuses ComponentStatuser
	// ResourceMetrics answers metrics.k8s.io (nil: 503).
	ResourceMetrics ResourceMetrics
	// CustomMetrics answers custom.metrics.k8s.io and
	// external.metrics.k8s.io (nil: 503).
	CustomMetrics CustomMetrics
	// Sealer encrypts the objects of encrypted resources before they are
	// proposed (encryption at rest); nil proposes every object as is.
	Sealer Sealer

	// Limits (limits.go). MaxRequestsInFlight and
	// MaxMutatingRequestsInFlight bound the read-only and the mutating
	// requests served at once, MaxWatchesPerUser the watches one user has
	// open; 0 is no limit (kube-apiserver's meaning of 0 for its in-flight
	// flags). The skiff server flags default to the Default* constants.
	MaxRequestsInFlight         int
	MaxMutatingRequestsInFlight int
	MaxWatchesPerUser           int
	// RequestBodyTimeout bounds the time to receive a request body
	// (DefaultRequestBodyTimeout if 0).
	RequestBodyTimeout time.Duration
	// WatchStallTimeout ends a watch whose client has taken none of its
	// initial events for this long, releasing its snapshot and goroutine
	// (DefaultWatchStallTimeout if 0).
	WatchStallTimeout time.Duration
	// JSONPatchMaxCopyBytes bounds the bytes the copy operations of one
	// JSON patch may add (DefaultJSONPatchMaxCopyBytes if 0). The limit is
	// the json-patch library's, global to the process: the lowest
	// configured wins, as in kube-apiserver.
	JSONPatchMaxCopyBytes int64

	// Audit log (audit.go): AuditPolicy picks each request's level and
	// AuditSink receives the events (server/auditlog); nil: no audit log.
	AuditPolicy audit.PolicyRuleEvaluator
	AuditSink   audit.Sink

	// Registerer takes the request metrics (metrics.go), with
	// kube-apiserver's names; nil: they are kept but not served.
	Registerer prometheus.Registerer
}

// APIServer is the http.Handler of the Kubernetes API.
type APIServer struct {
	store  Store
	authn  Authenticator
	authz  Authorizer
	reg    *registry.Registry
	log    *slog.Logger
	now    func() time.Time
	cfg    Config
	decode *decoder
	// openapi holds the OpenAPI documents, built on first use and again
	// when the custom resources change (openapi_crd.go).
	openapi openAPIState
	// nsCache spares creates a decode of their namespace.
	nsCache namespaceCache
	// events shares watch event objects among watches.
	events eventCache
	// pods knows the decoded pods the leader's informers hold.
	pods decodedPods
	// limits holds the in-flight seats and counts watches (limits.go).
	limits *limiter
	// flows classifies requests by FlowSchema (flowcontrol.go).
	flows flowClassifier
	// fields holds the field managers of managedFields and apply.
	fields fieldManagers
	// crds keeps the served custom resources current (crd.go).
	crds crdSync
	// metrics: the request metrics (metrics.go).
	metrics *apiMetrics
}

// New returns an APIServer.
func New(cfg Config) (*APIServer, error) {
	if cfg.Store == nil || cfg.Authenticator == nil || cfg.Authorizer == nil {
		return nil, errors.New("apiserver: Store, Authenticator and Authorizer are required")
	}
	if cfg.Registry == nil {
		cfg.Registry = registry.New()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BookmarkIdle <= 0 {
		cfg.BookmarkIdle = 5 * time.Second
	}
	if cfg.BookmarkMax <= 0 {
		cfg.BookmarkMax = time.Minute
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = MaxBodyBytes
	}
	if cfg.RequestBodyTimeout <= 0 {
		cfg.RequestBodyTimeout = DefaultRequestBodyTimeout
	}
	if cfg.WatchStallTimeout <= 0 {
		cfg.WatchStallTimeout = DefaultWatchStallTimeout
	}
	if cfg.JSONPatchMaxCopyBytes <= 0 {
		cfg.JSONPatchMaxCopyBytes = DefaultJSONPatchMaxCopyBytes
	}
	setJSONPatchCopyLimit(cfg.JSONPatchMaxCopyBytes)
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(newStorageObjects(cfg.Store)); err != nil {
			return nil, fmt.Errorf("apiserver: %w", err)
		}
	}
	return &APIServer{
		store:   cfg.Store,
		authn:   cfg.Authenticator,
		authz:   cfg.Authorizer,
		reg:     cfg.Registry,
		log:     cfg.Logger.With("component", "apiserver"),
		now:     cfg.Now,
		cfg:     cfg,
		decode:  newDecoder(cfg.Registry),
		limits:  newLimiter(cfg.MaxRequestsInFlight, cfg.MaxMutatingRequestsInFlight, cfg.MaxWatchesPerUser),
		metrics: newAPIMetrics(cfg.Registerer),
	}, nil
}

// Registry returns the registry the server serves.
func (s *APIServer) Registry() *registry.Registry { return s.reg }

// ServeHTTP authenticates, authorizes and dispatches one request.
func (s *APIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	rw := &statusRecorder{ResponseWriter: w, code: http.StatusOK, start: start}
	info := parseRequestInfo(r)
	r = auditInit(rw, r) // audit.go
	defer s.metrics.begin(s, r, info, rw)()
	defer func() {
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery,
			"verb", info.Verb, "resource", info.Resource, "namespace", info.Namespace, "name", info.Name,
			"code", rw.code, "duration", s.now().Sub(start))
	}()

	// The body, if any, must arrive in time, whoever sends it.
	bodyTimeout(w, r, info, s.cfg.RequestBodyTimeout)
	user, err := s.authn.Authenticate(r)
	if err != nil {
		if !errors.Is(err, auth.ErrUnauthenticated) {
			s.log.Warn("authentication failed", "err", err)
		}
		if end, _ := s.auditBegin(rw, r, nil, info); end != nil {
			defer end()
		}
		s.writeError(rw, r, unauthorized())
		auditFailedAuthentication(r)
		return
	}
	// Audited from here on, as kube-apiserver: 429s and 403s too.
	end, ok := s.auditBegin(rw, r, user, info)
	if end != nil {
		defer end()
	}
	if !ok {
		s.writeError(rw, r, apierrors.NewInternalError(errors.New("failed to store audit event")))
		return
	}
	if user, err = s.impersonated(r, user); err != nil { // impersonate.go
		s.writeError(rw, r, err)
		return
	}
	s.classifyFlow(r.Context(), rw, user, info) // flowcontrol.go
	limited := !exempt(user)
	if limited && !info.longRunning() {
		// In flight, as kube-apiserver: after authentication (the
		// exemption needs the user), before authorization.
		release, ok := s.limits.acquire(info.mutating())
		if !ok {
			s.log.Debug("request refused: too many requests in flight", "user", user.Name, "mutating", info.mutating())
			s.tooManyRequests(rw, r, "Too many requests, please try again later.")
			return
		}
		defer release()
	}
	allowed, reason := s.authz.Authorize(user, info.attributes())
	auditAuthorized(r.Context(), allowed, reason)
	if !allowed {
		s.writeError(rw, r, forbidden(user, info, reason))
		return
	}
	if limited && info.Verb == "watch" {
		release, n, ok := s.limits.acquireWatch(user.Name)
		if !ok {
			s.log.Debug("watch refused: too many watches", "user", user.Name, "open", n)
			s.tooManyRequests(rw, r, tooManyWatches(user.Name, n))
			return
		}
		defer release()
	}
	// Admission (NodeRestriction, RBAC escalation checks) needs the user
	// too, and its warnings go to the response's headers.
	ctx := auth.WithUser(r.Context(), user)
	r = r.WithContext(admission.WithWarnings(ctx, (&warningRecorder{w: rw}).add))
	if wn, ok := s.store.(Warner); ok {
		if msg := wn.Warning(); msg != "" {
			addWarnings(rw, []string{msg})
		}
	}
	req := &request{s: s, w: rw, r: r, user: user, info: info}
	s.route(req)
}

// route sends a request to its handler.
func (s *APIServer) route(req *request) {
	info := req.info
	s.syncCRDs(req.r.Context(), false)
	if !info.IsResource {
		s.serveNonResource(req)
		return
	}
	if isMetricsGroup(info) {
		s.serveCustomMetrics(req) // handler_custommetrics.go
		return
	}
	if isSelfSubjectReview(info) {
		s.handleSelfSubjectReview(req) // handler_whoami.go
		return
	}
	kind, ok := s.reg.Lookup(info.Group, info.Version, info.Resource)
	if !ok && info.Group != "" {
		// Perhaps a custom resource whose CRD this master has not
		// applied yet.
		s.syncCRDs(req.r.Context(), true)
		kind, ok = s.reg.Lookup(info.Group, info.Version, info.Resource)
	}
	if !ok {
		s.writeError(req.w, req.r, notFoundPath())
		return
	}
	req.kind = kind
	if !s.trackFields(req) { // managedfields.go
		return
	}
	switch {
	case kind.Namespaced && info.Namespace == "" && info.Name != "",
		!kind.Namespaced && info.Namespace != "" && info.Resource != "namespaces":
		// A named object of a namespaced kind needs a namespace; a
		// cluster-scoped kind has none.
		s.writeError(req.w, req.r, notFoundPath())
		return
	case kind.Namespaced && info.Namespace == "" && (info.Verb == "create" || info.Verb == "deletecollection"):
		s.writeError(req.w, req.r, methodNotSupported(req))
		return
	case kind.Virtual:
		s.serveVirtual(req) // handler_review.go
		return
	case kind.Terminating() && info.Verb == "create":
		s.writeError(req.w, req.r, terminatingCRD(req)) // crd.go
		return
	}
	switch sub := info.Subresource; {
	case sub == "":
	case !kind.HasSubresource(sub) || info.Name == "":
		s.writeError(req.w, req.r, notFoundPath())
		return
	case sub != registry.SubStatus:
		s.serveSubresource(req)
		return
	}
	switch info.Verb {
	case "get":
		s.handleGet(req)
	case "list":
		s.handleList(req)
	case "watch":
		s.handleWatch(req)
	case "create":
		if info.Subresource != "" {
			s.writeError(req.w, req.r, methodNotSupported(req))
			return
		}
		s.handleCreate(req)
	case "update":
		s.handleUpdate(req)
	case "patch":
		s.handlePatch(req)
	case "delete":
		if info.Subresource != "" {
			s.writeError(req.w, req.r, methodNotSupported(req))
			return
		}
		s.handleDelete(req)
	case "deletecollection":
		s.handleDeleteCollection(req)
	default:
		s.writeError(req.w, req.r, methodNotSupported(req))
	}
}

// request is one API request being served.
type request struct {
	s    *APIServer
	w    http.ResponseWriter
	r    *http.Request
	user *auth.User
	info *requestInfo
	kind *registry.Kind
}

// namespace is the namespace of the object(s) addressed: "" for
// cluster-scoped kinds and for lists across all namespaces.
func (req *request) namespace() string {
	if req.kind != nil && !req.kind.Namespaced {
		return ""
	}
	return req.info.Namespace
}

// statusRecorder remembers the response code for the request log and
// passes Flush through for watches.
type statusRecorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
	// start is when the request arrived; audit is the audit part of the
	// response (audit.go), nil when the request is not audited.
	start time.Time
	audit *auditWriter
	// size: the response body's bytes written (apiserver_response_sizes).
	size int
}

func (w *statusRecorder) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
		if w.audit != nil {
			w.audit.header(code)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.wroteHeader = true
		if w.audit != nil {
			w.audit.header(http.StatusOK)
		}
	}
	if w.audit != nil {
		w.audit.write(b)
	}
	n, err := w.ResponseWriter.Write(b)
	w.size += n
	return n, err
}

func (w *statusRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
