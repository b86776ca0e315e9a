package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/gossip"
	"github.com/skiff-io/skiff/server/apiserver"
	"github.com/skiff-io/skiff/server/auditlog"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/dashboard"
	"github.com/skiff-io/skiff/server/pki"
	"github.com/skiff-io/skiff/server/registry"
	"github.com/skiff-io/skiff/server/snapshot"
)

// Server is one Skiff master.
type Server struct {
	cfg Config
	log *slog.Logger
	// snapshotTargets keep copies of this master's cluster snapshots
	// beyond the masters' disks (--snapshot-copy-dir, --snapshot-s3-*).
	snapshotTargets []snapshot.Target

	fsm       *fsm.FSM
	raft      *raft.Raft
	transport *raft.NetworkTransport
	logStore  *raftboltdb.BoltStore
	leaderCh  chan bool
	verifier  *readVerifier // leader: barrier rounds
	// followerReads: rounds of read-index requests to the leader
	followerReads *readVerifier
	forwarder     *forwarder
	// leaderWatch tells requests in flight to a leader that it changed.
	leaderWatch *leaderWatch

	ca *pki.CA
	// rootKey wraps the data keys of encryption at rest (encryption.go);
	// encCapable: every voter can open sealed entries (probed under
	// encProbeMu, at most every encryptionProbeInterval).
	rootKey []byte
	// disk: the fsync latency measured at start (disk.go).
	disk diskProbe
	// authz authorizes the API's requests and /metrics.
	authz       *auth.Authorizer
	encCapable  atomic.Bool
	encProbeMu  sync.Mutex
	encProbedAt time.Time
	token       string
	secret      string
	// pendingAgentToken is the agent token (id.secret) prepareAgentToken
	// made, until storeAgentToken has stored it.
	pendingAgentToken string
	serverCert        []byte
	serverKey         []byte
	peerClient        *http.Client
	authn             *auth.Authenticator
	// saKeyPEM signs service-account tokens through saTokens (satoken.go).
	saKeyPEM []byte
	saTokens *auth.ServiceAccountTokens

	httpSrv *http.Server
	apiLn   net.Listener
	// api serves the leader's own informers in process (informers.go).
	api *apiserver.APIServer
	// audit is the audit log (nil: off).
	audit *auditlog.Log
	// monitoring: the metrics store, scraper and query API (monitoring.go;
	// nil when disabled).
	monitoring *monitoring
	// logging: the log store and its API (logging.go; nil when disabled).
	logging *logging
	// cmetrics: the components' own metrics (componentmetrics.go).
	cmetrics *componentMetrics

	// gossip is this master's serf member (gossip.go); seeds are other
	// masters' gossip addresses learned when joining.
	gossip gossip.Membership
	// onSuspected is called when this master's member refutes a
	// suspicion about itself (SetGossipSuspectedHook).
	onSuspected atomic.Pointer[func(time.Duration)]
	// started: Start ran (Shutdown then announces a planned stop).
	started atomic.Bool
	// resumed: Raft state was found in the data dir at start.
	resumed bool
	// startTime counts as the last contact with a leader before any
	// (quorum.go).
	startTime time.Time

	seedMu   sync.Mutex
	seeds    []string
	rotateMu sync.Mutex

	// addons: this master's manifests and, on the leader, the addon
	// manager (addons.go).
	addons addonState

	leaderReady atomic.Bool
	// mark records the applied index durably (applied.go); markErr is
	// set when it could not. appliedFloor is the index saved before the
	// last stop: reads answer 503 until the state reaches it.
	mark         *appliedMark
	markErr      atomic.Pointer[error]
	appliedFloor atomic.Uint64
	shutdownCh   chan struct{}
	// failed carries an error this master cannot serve on with (a join
	// refused for good); the command stops the process with it.
	failed   chan error
	shutdown sync.Once
	wg       sync.WaitGroup
}

// New prepares a master: credentials, the FSM and Raft (bootstrapping a new
// cluster or resuming from the data dir), and the API listener. Start
// begins serving.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "server", "node", cfg.NodeName),
		leaderCh:   make(chan bool, 16),
		shutdownCh: make(chan struct{}),
		failed:     make(chan error, 1),
		startTime:  time.Now(),
		cmetrics:   newComponentMetrics(),
	}
	targets, err := cfg.snapshotTargets()
	if err != nil {
		return nil, err
	}
	s.snapshotTargets = targets
	if err := s.loadOrCreateCredentials(ctx); err != nil {
		return nil, err
	}
	pool := s.ca.Pool()
	peerTLS, err := pki.ClientTLSConfig(pool, s.serverCert, s.serverKey, "")
	if err != nil {
		return nil, err
	}
	s.peerClient = &http.Client{Transport: &http.Transport{
		TLSClientConfig:     peerTLS,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
	}}
	s.fsm = fsm.New(fsm.Options{RingSize: cfg.WatchRingSize, Logger: cfg.Logger})
	if err := s.fsm.SetEncryption(s.fsmEncryption()); err != nil {
		return nil, err
	}
	if err := s.setupRaft(); err != nil {
		s.closeStores()
		return nil, err
	}
	if err := s.setupGossip(ctx); err != nil {
		s.Shutdown()
		return nil, fmt.Errorf("gossip: %w", err)
	}
	s.registerStateMetrics()
	s.verifier = &readVerifier{fetch: leaderReadIndex(s.raft, s.fsm)}
	s.followerReads = &readVerifier{fetch: s.forwardReadIndex}
	s.forwarder = &forwarder{s: s}
	s.leaderWatch = newLeaderWatch()
	s.authn = auth.NewAuthenticator(auth.AuthenticatorConfig{JoinSecret: s.secret, CAHash: pki.CAHash(s.ca.CertPEM), Secrets: secretGetter{s},
		ServiceAccountTokens: s.saTokens, Objects: saObjects{s}, Logger: cfg.Logger})
	kubelets, err := s.kubeletTransport()
	if err != nil {
		s.Shutdown()
		return nil, err
	}
	if err := s.setupMonitoring(kubelets); err != nil {
		s.Shutdown()
		return nil, err
	}
	if err := s.setupLogStore(); err != nil {
		s.Shutdown()
		return nil, err
	}
	authz := auth.NewAuthorizer().WithNodeObjects(nodeObjects{s}).WithRBAC(rbacObjects{s})
	s.authz = authz
	s.audit, err = auditlog.Open(cfg.Audit, cfg.Logger)
	if err != nil {
		s.Shutdown()
		return nil, err
	}
	reg := registry.New()
	chain := s.admissionChain(authz, reg)
	chain.SetKubeletTransport(kubelets) // webhooks served by pods
	reg.SetCustomConverter(chain.CustomConverter())
	apiCfg := apiserver.Config{
		Registry:         reg,
		KubeletTransport: kubelets,
		Store:            raftStore{s},
		Authenticator:    s.authn,
		Authorizer:       authz,
		Admission:        chain,
		// ServiceAccountTokens signs TokenRequests.
		ServiceAccountTokens:        s.saTokens,
		Sealer:                      sealer{s},
		ComponentStatuses:           componentStatuses{s},
		ResourceMetrics:             s.apiResourceMetrics(),
		CustomMetrics:               s.apiCustomMetrics(),
		Logger:                      cfg.Logger,
		MaxRequestsInFlight:         cfg.MaxRequestsInFlight,
		MaxMutatingRequestsInFlight: cfg.MaxMutatingRequestsInFlight,
		MaxWatchesPerUser:           cfg.MaxWatchesPerUser,
		RequestBodyTimeout:          cfg.RequestBodyTimeout,
		Registerer:                  s.cmetrics.reg,
	}
	if s.audit != nil {
		apiCfg.AuditPolicy, apiCfg.AuditSink = s.audit.Policy(), s.audit.Sink()
	}
	api, err := apiserver.New(apiCfg)
	if err != nil {
		s.Shutdown()
		return nil, err
	}
	s.api = api
	serverTLS, err := pki.ServerTLSConfig(pool, s.serverCert, s.serverKey)
	if err != nil {
		s.Shutdown()
		return nil, err
	}
	addr := net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.APIPort))
	s.apiLn, err = net.Listen("tcp", addr)
	if err != nil {
		s.Shutdown()
		return nil, fmt.Errorf("API listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/internal/", s.internalHandler())
	mux.HandleFunc("GET /cacerts", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.ca.CertPEM)
	})
	mux.HandleFunc("GET /.well-known/openid-configuration", s.handleOpenIDConfiguration)
	mux.HandleFunc("GET /openid/v1/jwks", s.handleJWKS)
	mux.HandleFunc("GET /livez", s.handleLivez)
	mux.HandleFunc("GET /healthz", s.handleLivez)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.Handle("/prometheus/", s.prometheusHandler())
	mux.Handle("/logs/", s.logsHandler())
	dash, err := dashboard.New() // the web UI's static files, served to anyone
	if err != nil {
		s.Shutdown()
		return nil, err
	}
	mux.Handle(dashboard.Prefix, dash)
	// Profiling for cluster admins, as kube-apiserver's --profiling.
	mux.HandleFunc("/debug/pprof/", s.requireAdmin(pprof.Index))
	mux.HandleFunc("/debug/pprof/profile", s.requireAdmin(pprof.Profile))
	mux.HandleFunc("/debug/pprof/trace", s.requireAdmin(pprof.Trace))
	if cfg.Witness {
		mux.Handle("/", witnessAPI{})
	} else {
		mux.Handle("/", api)
	}
	s.httpSrv = &http.Server{
		Handler:           mux,
		TLSConfig:         serverTLS,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Start serves the API and begins leader monitoring and, for a master
// started with --join, joining.
func (s *Server) Start() {
	s.started.Store(true)
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		s.leaderWatch.run(s.raft, s.shutdownCh)
	}()
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.ServeTLS(s.apiLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("API server stopped", "err", err)
		}
	}()
	go s.monitorLeadership()
	s.wg.Add(1)
	go s.addonScanLoop()
	s.wg.Add(4)
	go s.resealLoop()
	go s.keepGossipJoined()
	go s.repairLoop()
	go s.digestLoop()
	s.wg.Add(2)
	go s.runScraper()
	s.wg.Add(1)
	go s.runEventLog()
	go s.runComponentMetrics()
	// A master that resumes as a voter of its cluster, at the addresses
	// its record holds, needs no join (its --join master may be gone: a
	// cluster reset).
	if s.cfg.Join != "" && !(s.resumed && s.isVoter() && s.recordCurrent()) {
		s.wg.Add(1)
		go s.joinLoop()
	}
	if s.pendingAgentToken != "" {
		s.wg.Add(1)
		go s.storeAgentToken()
	}
	if s.cfg.Witness {
		s.wg.Add(1)
		go s.witnessTrimLoop()
	}
	if len(s.snapshotTargets) > 0 {
		go s.checkSnapshotTargets(context.Background())
	}
	s.log.Info("master started", "api", s.cfg.apiURL(), "raft", s.cfg.raftAddr(), "data-dir", s.cfg.DataDir)
}

// Shutdown stops serving and closes Raft and the stores. It is safe to
// call more than once.
func (s *Server) Shutdown() {
	s.StepDown()
	s.shutdown.Do(func() {
		close(s.shutdownCh)
		if s.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = s.httpSrv.Shutdown(ctx)
			cancel()
			_ = s.httpSrv.Close()
		} else if s.apiLn != nil {
			_ = s.apiLn.Close()
		}
		if s.gossip != nil {
			if s.started.Load() {
				// A planned stop: the masters leave this master's node to
				// its Lease (docs/gossip.md).
				if err := gossip.AnnounceStop(s.gossip, time.Second); err != nil {
					s.log.Warn("announce the planned stop to gossip", "err", err)
				}
			}
			_ = s.gossip.Shutdown()
		}
		if s.raft != nil {
			if err := s.raft.Shutdown().Error(); err != nil {
				s.log.Warn("raft shutdown", "err", err)
			}
		}
		s.wg.Wait()
		s.closeStores()
		s.closeMonitoring()
		s.closeLogStore()
		if s.audit != nil {
			// After the API stopped: the last events are written.
			if err := s.audit.Shutdown(); err != nil {
				s.log.Warn("audit log", "err", err)
			}
		}
	})
}

// StepDown hands leadership to the most up-to-date voter when this master
// leads a cluster of several voters, so that a planned stop (SIGTERM, a
// rolling upgrade) costs the cluster no election timeout: the others do
// not wait to notice the leader is gone. A no-op on a follower or a
// single master; on failure the stop goes on and the others elect a
// leader as after a crash.
func (s *Server) StepDown() {
	if s.raft == nil || s.raft.State() != raft.Leader {
		return
	}
	cf := s.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	voters := 0
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters++
		}
	}
	if voters < 2 {
		return
	}
	start := time.Now()
	if err := s.raft.LeadershipTransfer().Error(); err != nil {
		s.log.Warn("leadership transfer before shutdown failed: the others will elect a leader", "err", err)
		return
	}
	_, to := s.raft.LeaderWithID()
	s.log.Info("leadership transferred before shutdown", "to", string(to), "took", time.Since(start).Round(time.Millisecond))
}

func (s *Server) closeStores() {
	if s.transport != nil {
		_ = s.transport.Close()
	}
	if s.logStore != nil {
		_ = s.logStore.Close()
	}
	if s.mark != nil {
		_ = s.mark.Close()
	}
}

// setupRaft opens the on-disk log (raft-boltdb, fsync on every append) and
// snapshot store, the mutual-TLS transport, and Raft itself.
func (s *Server) setupRaft() error {
	dir := s.cfg.raftDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Refused before anything touches the dir (openRaftStores checks
	// again, for --cluster-reset and a restore).
	if err := checkDataFormat(dir); err != nil {
		return err
	}
	used, err := checkRaftDB(filepath.Join(dir, "raft.db"))
	if err != nil {
		return err
	}
	if _, _, err := compactRaftDB(filepath.Join(dir, "raft.db"), used, compactMinSize, s.log); err != nil {
		// The file is intact (a compaction writes a new one): go on.
		s.log.Warn("raft.db not compacted", "err", err)
	}
	s.tuneForDisk(dir)
	if s.mark, _, err = openAppliedMark(filepath.Join(dir, appliedMarkFile)); err != nil {
		return err
	}
	var (
		snaps *raft.FileSnapshotStore
		hlog  hclog.Logger
	)
	if s.logStore, snaps, hlog, err = openRaftStores(dir); err != nil {
		return err
	}
	advertise, err := net.ResolveTCPAddr("tcp", s.cfg.raftAddr())
	if err != nil {
		return err
	}
	mtls, err := pki.MutualTLSConfig(s.ca.Pool(), s.serverCert, s.serverKey)
	if err != nil {
		return err
	}
	clientTLS, err := pki.ClientTLSConfig(s.ca.Pool(), s.serverCert, s.serverKey, "")
	if err != nil {
		return err
	}
	layer, err := newTLSStreamLayer(net.JoinHostPort(s.cfg.BindAddress, strconv.Itoa(s.cfg.RaftPort)), advertise, mtls, clientTLS)
	if err != nil {
		return err
	}
	s.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 5, Timeout: 10 * time.Second, Logger: hlog,
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.NodeName)
	rc.Logger = hlog
	rc.HeartbeatTimeout = s.cfg.HeartbeatTimeout
	rc.ElectionTimeout = s.cfg.HeartbeatTimeout
	rc.LeaderLeaseTimeout = s.cfg.HeartbeatTimeout / 2
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.SnapshotInterval = s.cfg.SnapshotInterval
	rc.TrailingLogs = s.cfg.TrailingLogs
	rc.MaxAppendEntries = 512
	rc.BatchApplyCh = true
	rc.NotifyCh = s.leaderCh

	existing, err := raft.HasExistingState(s.logStore, s.logStore, snaps)
	if err != nil {
		return fmt.Errorf("raft state: %w", err)
	}
	// Recent entries are served from memory when replicating to followers.
	logs, err := raft.NewLogCache(4096, s.logStore)
	if err != nil {
		return err
	}
	s.raft, err = raft.NewRaft(rc, markingFSM{FSM: s.fsm, s: s}, logs, s.logStore, snaps, s.transport)
	if err != nil {
		return fmt.Errorf("raft: %w", err)
	}
	switch {
	case existing:
		s.resumed = true
		s.log.Info("resuming from data dir", "last-index", s.raft.LastIndex())
		if err := s.replayApplied(); err != nil {
			return err
		}
	case s.cfg.Join != "":
		s.log.Info("waiting to be added to the cluster", "via", s.cfg.Join)
	default:
		s.log.Info("bootstrapping a new cluster")
		cfg := raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: s.transport.LocalAddr(), Suffrage: raft.Voter,
		}}}
		if err := s.raft.BootstrapCluster(cfg).Error(); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	return nil
}

func (s *Server) handleLivez(w http.ResponseWriter, r *http.Request) {
	_, _ = w.Write([]byte("ok"))
}

// handleReadyz: ready means part of a cluster that has a leader, and caught
// up with it (a leader: its post-election barrier is done; a follower: in
// recent contact and applied close to the commit index).
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if c := s.fsm.Corruption(); c != nil {
		w.Header().Set(stateHeader, "corrupt")
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 { // a master's probe (members.go)
		last := 0.0
		if s.raft.State() != raft.Leader {
			last = time.Since(s.raft.LastContact()).Seconds()
		}
		w.Header().Set(lastContactHeader, strconv.FormatFloat(last, 'f', 3, 64))
	}
	if reason := s.notReady(); reason != "" {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
		http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

func (s *Server) notReady() string {
	if err := s.servingError(); err != nil {
		return err.Error()
	}
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return "no leader"
	}
	if s.raft.State() == raft.Leader {
		if !s.leaderReady.Load() {
			return "leader not yet established"
		}
		return ""
	}
	if time.Since(s.raft.LastContact()) > 3*s.cfg.HeartbeatTimeout {
		return "no recent contact with the leader"
	}
	if lag := int64(s.raft.CommitIndex()) - int64(s.raft.AppliedIndex()); lag > 1000 {
		return fmt.Sprintf("catching up: %d entries behind", lag)
	}
	if _, ok := s.lookupMember(string(id)); !ok {
		return "leader's address not yet known"
	}
	return ""
}

// Token returns the cluster join token.
func (s *Server) Token() string { return s.token }

// secretGetter lets the authenticator read bootstrap-token Secrets from the
// local state.
type secretGetter struct{ s *Server }

func (g secretGetter) GetSecret(namespace, name string) (*corev1.Secret, bool) {
	o := g.s.fsm.Read().Get(state.Key{Resource: "secrets", Namespace: namespace, Name: name})
	if o == nil {
		return nil, false
	}
	var sec corev1.Secret
	if err := json.Unmarshal(o.Data, &sec); err != nil {
		g.s.log.Error("undecodable secret", "namespace", namespace, "name", name, "err", err)
		return nil, false
	}
	return &sec, true
}

// Failed delivers an error after which this master must stop (the
// command exits with it).
func (s *Server) Failed() <-chan error { return s.failed }

func (s *Server) fail(err error) {
	s.log.Error("master cannot go on", "err", err)
	select {
	case s.failed <- err:
	default:
	}
}

// isVoter reports whether this master is a voter in its Raft configuration.
func (s *Server) isVoter() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == s.cfg.NodeName {
			return srv.Suffrage == raft.Voter
		}
	}
	return false
}

// recordCurrent reports whether this master's member record holds its
// current addresses.
func (s *Server) recordCurrent() bool {
	m, ok := s.lookupMember(s.cfg.NodeName)
	return ok && *m == s.self()
}
