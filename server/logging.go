package server

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/logstore"
)

// LogsConfig configures the master's log store (server/logstore,
// docs/logging.md); zero values take the package's defaults.
type LogsConfig struct {
	// Disable: no store, no ingest, no query API, no Events log.
	Disable   bool
	Retention time.Duration
	// MaxDisk bounds the store's disk use (oldest days dropped first);
	// 0: no bound.
	MaxDisk      int64
	QueryTimeout time.Duration
}

// logging is this master's log store and its API.
type logging struct {
	store *logstore.Store
	api   *logstore.API
}

func (c *Config) logsDir() string { return filepath.Join(c.DataDir, "logs") }

// setupLogStore opens the log store (replaying its WAL). Witnesses keep
// none.
func (s *Server) setupLogStore() error {
	if s.cfg.Logs.Disable || s.cfg.Witness {
		return nil
	}
	var reg prometheus.Registerer
	if s.monitoring != nil {
		reg = s.monitoring.reg
	}
	size := s.cfg.Logs.MaxDisk
	if size == 0 {
		size = -1 // --logs-max-disk 0: no bound
	}
	st, err := logstore.Open(s.cfg.logsDir(), logstore.Options{
		Retention: s.cfg.Logs.Retention, MaxDisk: size,
		Registerer: reg, Logger: s.cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("log store: %w", err)
	}
	s.logging = &logging{store: st, api: logstore.NewAPI(st, logsAccess{s}, s.cfg.Logs.QueryTimeout, s.cfg.Logger)}
	return nil
}

func (s *Server) closeLogStore() {
	if s.logging == nil {
		return
	}
	if err := s.logging.store.Close(); err != nil {
		s.log.Warn("close the log store", "err", err)
	}
}

// logsHandler serves /logs/v1/... (404 without a store).
func (s *Server) logsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.logging == nil {
			logstore.WriteStatus(w, apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path))
			return
		}
		s.logging.api.ServeHTTP(w, r)
	})
}

// logsAccess authorizes the log API with the API server's authenticator
// and authorizer (docs/logging.md, RBAC).
type logsAccess struct{ s *Server }

func (a logsAccess) user(r *http.Request) (*auth.User, error) {
	u, err := a.s.authn.Authenticate(r)
	if err != nil {
		return nil, apierrors.NewUnauthorized("Unauthorized")
	}
	return u, nil
}

// Ingest: masters (server credentials) and cluster admins ingest
// anything; a node (system:node:NAME) only records of its own node;
// others need RBAC "create" on the path /logs/v1/ingest.
func (a logsAccess) Ingest(r *http.Request) (string, error) {
	u, err := a.user(r)
	if err != nil {
		return "", err
	}
	if u.InGroup(auth.GroupSkiffServers) || u.InGroup(auth.GroupMasters) {
		return "", nil
	}
	if node, ok := strings.CutPrefix(u.Name, auth.NodeUserPrefix); ok && node != "" && u.InGroup(auth.GroupNodes) {
		return node, nil
	}
	if ok, _ := a.s.authz.Authorize(u, auth.Attributes{Verb: "create", Path: "/logs/v1/ingest"}); ok {
		return "", nil
	}
	return "", apierrors.NewForbidden(schema.GroupResource{}, "",
		fmt.Errorf("User %q cannot create path %q", u.Name, "/logs/v1/ingest"))
}

// Read: container records of a namespace need get pods/log there, events
// get events there, agent and server records get nodes/proxy. Without a
// namespace the scope is every namespace the caller may read (all of
// them, including deleted ones, with a cluster-wide grant).
func (a logsAccess) Read(r *http.Request, namespace string) (logstore.Scope, error) {
	u, err := a.user(r)
	if err != nil {
		return logstore.Scope{}, err
	}
	may := func(attrs auth.Attributes) bool {
		attrs.Verb = "get"
		ok, _ := a.s.authz.Authorize(u, attrs)
		return ok
	}
	podLog := auth.Attributes{Resource: "pods", Subresource: "log"}
	events := auth.Attributes{Resource: "events"}
	sc := logstore.Scope{Nodes: may(auth.Attributes{Resource: "nodes", Subresource: "proxy"}), User: u.Name}
	if namespace != "" {
		podLog.Namespace, events.Namespace = namespace, namespace
		if may(podLog) {
			sc.PodLogs = []string{namespace}
		}
		if may(events) {
			sc.Events = []string{namespace}
		}
		return sc, nil
	}
	sc.AllPodLogs, sc.AllEvents = may(podLog), may(events)
	if sc.AllPodLogs && sc.AllEvents {
		return sc, nil
	}
	a.s.fsm.Read().List("namespaces", "", "", func(o *state.Object) bool {
		podLog.Namespace, events.Namespace = o.Key.Name, o.Key.Name
		if !sc.AllPodLogs && may(podLog) {
			sc.PodLogs = append(sc.PodLogs, o.Key.Name)
		}
		if !sc.AllEvents && may(events) {
			sc.Events = append(sc.Events, o.Key.Name)
		}
		return true
	})
	return sc, nil
}
