package apiservertest

import (
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/fsmtest"
	"github.com/skiff-io/skiff/server/admission"
	"github.com/skiff-io/skiff/server/apiserver"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/pki"
	"github.com/skiff-io/skiff/server/registry"
)

// Token is the bearer token the test server's authenticator accepts.
const Token = "test-token"

// Options tune a test server.
type Options struct {
	// RingSize of the FSM's watch ring (default fsm.DefaultRingSize).
	RingSize int
	// BookmarkIdle and BookmarkMax are passed to the API server.
	BookmarkIdle time.Duration
	BookmarkMax  time.Duration
	Authorizer   *FakeAuthorizer
	Now          func() time.Time
	// Admission enables the admission chain (server/admission).
	Admission bool
	// User is who the Token authenticates as (a system:masters admin if
	// unset); AdminToken, if set, authenticates as that admin in any case.
	User       *auth.User
	AdminToken string
	// Limits passed to the API server (apiserver.Config).
	MaxRequestsInFlight         int
	MaxMutatingRequestsInFlight int
	MaxWatchesPerUser           int
	MaxBodyBytes                int64
	RequestBodyTimeout          time.Duration
	WatchStallTimeout           time.Duration
	// AuditPolicy and AuditSink: the audit log (apiserver.Config).
	AuditPolicy audit.PolicyRuleEvaluator
	AuditSink   audit.Sink
	// ResourceMetrics answers metrics.k8s.io (apiserver.Config).
	ResourceMetrics apiserver.ResourceMetrics
	// Registerer takes the request metrics (apiserver.Config).
	Registerer prometheus.Registerer
}

// Server is an API server over a FakeRaftStore behind httptest TLS.
type Server struct {
	HTTP       *httptest.Server
	Store      *fsmtest.FakeRaftStore
	API        *apiserver.APIServer
	Authorizer *FakeAuthorizer
	// Tokens signs and verifies the server's service-account tokens.
	Tokens *auth.ServiceAccountTokens
}

// NewServer starts a test server; it is closed in t.Cleanup.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	store := fsmtest.NewFakeRaftStore(fsm.Options{RingSize: opts.RingSize})
	authz := opts.Authorizer
	if authz == nil {
		authz = &FakeAuthorizer{}
	}
	level := slog.LevelInfo
	if os.Getenv("SKIFF_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	keyPEM, err := pki.GenerateServiceAccountKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseServiceAccountKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewServiceAccountTokens(key, auth.TokenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	authn := &FakeAuthenticator{Token: Token, AdminToken: opts.AdminToken}
	if opts.User != nil {
		authn.User = *opts.User
	}
	var adm apiserver.Admission
	reg := registry.New() // shared, so admission sees the custom resources
	if opts.Admission {
		chain := admission.New(store, reg, nil)
		reg.SetCustomConverter(chain.CustomConverter())
		adm = chain
	}
	api, err := apiserver.New(apiserver.Config{
		Registry:  reg,
		Admission: adm,
		// TokenRequests are signed with a key of the test's own.
		ServiceAccountTokens: tokens,
		Store:                store,
		Authenticator:        authn,
		Authorizer:           authz,
		Logger:               slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		Now:                  opts.Now,
		BookmarkIdle:         opts.BookmarkIdle,
		BookmarkMax:          opts.BookmarkMax,

		MaxRequestsInFlight:         opts.MaxRequestsInFlight,
		MaxMutatingRequestsInFlight: opts.MaxMutatingRequestsInFlight,
		MaxWatchesPerUser:           opts.MaxWatchesPerUser,
		MaxBodyBytes:                opts.MaxBodyBytes,
		RequestBodyTimeout:          opts.RequestBodyTimeout,
		WatchStallTimeout:           opts.WatchStallTimeout,
		AuditPolicy:                 opts.AuditPolicy,
		AuditSink:                   opts.AuditSink,
		ResourceMetrics:             opts.ResourceMetrics,
		Registerer:                  opts.Registerer,
	})
	if err != nil {
		t.Fatalf("apiserver.New: %v", err)
	}
	ts := httptest.NewUnstartedServer(api)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return &Server{HTTP: ts, Store: store, API: api, Authorizer: authz, Tokens: tokens}
}

// RESTConfig returns a client config for the server (protobuf for the
// typed clientset's core kinds, as client-go defaults).
func (s *Server) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:        s.HTTP.URL,
		BearerToken: Token,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: s.CAPEM(),
		},
		QPS:   1000,
		Burst: 1000,
	}
}

// CAPEM is the PEM of the test server's certificate (its own CA).
func (s *Server) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.HTTP.Certificate().Raw})
}

// Clientset returns a typed clientset for the server.
func (s *Server) Clientset(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.RESTConfig())
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return cs
}
