package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/client/logrecord"
	"github.com/skiff-io/skiff/server"
	"github.com/skiff-io/skiff/server/apiserver"
	"github.com/skiff-io/skiff/server/servicealloc"
	"github.com/skiff-io/skiff/server/snapshot"
)

func newServerCommand() *cobra.Command {
	var (
		cfg          server.Config
		tokenFile    string
		node         nodeOptions
		agentRuntime string
		kubeletPort  int
		supervise    bool
		// secretsEncryption is --secrets-encryption.
		secretsEncryption bool
		clusterReset      bool
		resetRestore      string
		s3                snapshot.S3Config
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Skiff master (API server, Raft store, scheduler and controllers)",
		Long: `Run a Skiff master.

Without --join, the first start bootstraps a new single-master cluster in
--data-dir and later starts resume from it. Other masters join with
--join https://FIRST:6443 --token-file <first master's data-dir>/token.

The master writes <data-dir>/token (the server token: it joins masters and
is the only way to the cluster's keys), the first master also
<data-dir>/agent-token (an agent token, for nodes: skiff agent
--token-file; more with skiff token create), and
<data-dir>/kubeconfig.yaml (cluster-admin credentials for kubectl).

Unless --disable-agent is given, the master also runs an agent (the
kubelet) for its own node, with credentials it issues itself. The leader
runs the scheduler (unless --disable-scheduler) and the controllers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.DisableSecretsEncryption = !secretsEncryption
			if tokenFile != "" {
				if cfg.Token != "" {
					return errors.New("give --token or --token-file, not both")
				}
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--token-file: %w", err)
				}
				cfg.Token = strings.TrimSpace(string(b))
			}
			if cfg.Join != "" {
				u, err := masterURL("--join", cfg.Join)
				if err != nil {
					return err
				}
				cfg.Join = u
			}
			if !cfg.DisableAgent && agentRuntime == "libcontainer" {
				if err := requireRoot("skiff server (with its embedded agent)"); err != nil {
					return err
				}
			}
			defaultAuditPath(cmd.Flags(), cfg.DataDir, &cfg.Audit)
			if s3.Bucket != "" {
				cfg.SnapshotS3 = &s3
			} else if cmd.Flags().Changed("snapshot-s3-endpoint") || s3.Folder != "" || s3.AccessKey != "" {
				return errors.New("--snapshot-s3-* flags need --snapshot-s3-bucket")
			}
			if err := node.Shipper.check(); err != nil {
				return err
			}
			cfg.Logger = slog.Default()
			if !cfg.DisableAgent && agentRuntime != "fake" {
				cfg.Logger = node.Shipper.tapLogs(logrecord.KindServer)
			}
			if resetRestore != "" && !clusterReset {
				return errors.New("--cluster-reset-restore goes with --cluster-reset")
			}
			if clusterReset {
				return resetCluster(cfg, resetRestore)
			}
			// A master trades memory for CPU: collect garbage at 200% growth
			// instead of 100%, unless GOGC says otherwise.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(200)
			}
			node.Runtime, node.KubeletPort = agentRuntime, kubeletPort
			if err := node.checkDisable("ingress", "servicelb", "local-storage"); err != nil {
				return err
			}
			cfg.Controllers.DisableServiceLB = node.disabled("servicelb")
			cfg.DisableLocalStorage = node.disabled("local-storage")
			cfg.KubeletPort = kubeletPort
			// The embedded agent shares the data dir: this lock covers it.
			mode, unlock, parent, err := startProcess(cfg.DataDir, "server", supervise)
			if parent || err != nil {
				return err
			}
			defer unlock()
			node.mode = mode
			return runServer(cmd.Context(), cfg, node)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/skiff", "directory for the Raft log, snapshots, certificates, token and kubeconfig")
	f.StringVar(&cfg.NodeName, "node-name", "", "name of this master (default: the hostname)")
	f.StringVar(&cfg.BindAddress, "bind-address", "0.0.0.0", "address the API, Raft and gossip listeners bind to")
	f.StringVar(&cfg.AdvertiseAddress, "advertise-address", "", "address other masters and clients use to reach this master (default: the bind address, or the first non-loopback IPv4 when binding to all)")
	f.StringSliceVar(&cfg.TLSSANs, "tls-san", nil, "extra host names or IP addresses in the master's TLS certificate (a load balancer's, another address of the host)")
	f.IntVar(&cfg.APIPort, "api-port", 6443, "HTTPS port of the Kubernetes API")
	f.IntVar(&cfg.RaftPort, "raft-port", 6444, "port of Raft traffic between masters (mutual TLS)")
	f.IntVar(&cfg.GossipPort, "gossip-port", 7946, "port of gossip (serf) among masters and nodes, UDP and TCP")
	f.StringVar(&cfg.GossipProfile, "gossip-profile", "lan", "gossip tuning: lan, or wan for lossy or slow links (docs/gossip.md)")
	f.DurationVar(&cfg.DeadServerCleanup, "dead-server-cleanup", 0, "if set, the leader removes a master gossip reports failed for this long from the Raft voters, when the rest keep a quorum (0: never)")
	f.StringVar(&cfg.Join, "join", "", "URL of a master of an existing cluster to join, https://HOST:PORT")
	f.StringVar(&cfg.Token, "token", "", "join token (K10<ca-hash>::server:<secret>); on a new cluster, a bare secret to use instead of a generated one")
	f.StringVar(&tokenFile, "token-file", "", "file holding the join token")
	f.BoolVar(&cfg.DisableAgent, "disable-agent", false, "do not run the embedded agent (the kubelet for this master's own node)")
	f.BoolVar(&cfg.DisableScheduler, "disable-scheduler", false, "do not run the scheduler on the leader (pods stay unbound until another scheduler binds them)")
	f.StringVar(&cfg.ClusterCIDR, "cluster-cidr", server.DefaultClusterCIDR, "pod address range; each node gets a /24 of it as its podCIDR")
	f.StringVar(&cfg.ServiceCIDR, "service-cidr", servicealloc.DefaultServiceCIDR, "Service cluster IP range (IPv4); the kubernetes Service takes its first address")
	f.StringVar(&cfg.NodePortRange, "service-node-port-range", server.DefaultNodePortRange, "port range of NodePort Services")
	f.StringVar(&cfg.ServiceAccountIssuer, "service-account-issuer", "https://kubernetes.default.svc.cluster.local", "\"iss\" of service-account tokens; its /.well-known/openid-configuration is served")
	f.StringSliceVar(&cfg.APIAudiences, "api-audiences", nil, "audiences of service-account tokens the API accepts (default: the issuer)")
	f.DurationVar(&cfg.ServiceAccountMaxTokenExpiration, "service-account-max-token-expiration", 48*time.Hour, "longest lifetime a TokenRequest is granted")
	f.IntVar(&cfg.MaxRequestsInFlight, "max-requests-inflight", apiserver.DefaultMaxRequestsInFlight, "most read-only API requests served at once, watches and other long-running requests apart; more are answered 429 (0: no limit; system:masters is exempt)")
	f.IntVar(&cfg.MaxMutatingRequestsInFlight, "max-mutating-requests-inflight", apiserver.DefaultMaxMutatingRequestsInFlight, "most mutating API requests served at once; more are answered 429 (0: no limit; system:masters is exempt)")
	f.IntVar(&cfg.MaxWatchesPerUser, "max-watches-per-user", apiserver.DefaultMaxWatchesPerUser, "most watches one user may have open on this master; more are answered 429 (0: no limit; system:masters is exempt)")
	f.BoolVar(&clusterReset, "cluster-reset", false, "make this master, stopped, the only master of its cluster with the state it holds (after a majority of masters is lost for good), then exit; start it again without the flag (docs/ha.md)")
	f.StringVar(&resetRestore, "cluster-reset-restore", "", "with --cluster-reset: the state and keys come from this snapshot file (skiff cluster snapshot save), or the snapshot of this name in the snapshot dir, --snapshot-copy-dir or the --snapshot-s3-bucket; it opens with the cluster's server token (--token, or the data dir's token file)")
	f.StringVar(&cfg.ClusterSnapshotSchedule, "snapshot-schedule", server.DefaultSnapshotSchedule, "cron schedule of the leader's cluster snapshots, copied to every master (\"\": none)")
	f.IntVar(&cfg.ClusterSnapshotRetention, "snapshot-retention", server.DefaultSnapshotRetention, "scheduled cluster snapshots kept (the oldest are deleted on every master)")
	f.StringVar(&cfg.ClusterSnapshotDir, "snapshot-dir", "", "directory of cluster snapshot files (default <data-dir>/snapshots)")
	f.StringVar(&cfg.SnapshotCopyDir, "snapshot-copy-dir", "", "also copy each cluster snapshot this master takes to this directory (a USB disk, an NFS mount); pruned with --snapshot-retention")
	f.StringVar(&s3.Bucket, "snapshot-s3-bucket", "", "also copy each cluster snapshot this master takes to this S3-compatible bucket (files are sealed with the server token); pruned with --snapshot-retention")
	f.StringVar(&s3.Endpoint, "snapshot-s3-endpoint", "s3.amazonaws.com", "HOST[:PORT] of the S3 API (AWS, MinIO, Garage, Ceph RGW)")
	f.StringVar(&s3.Folder, "snapshot-s3-folder", "", "key prefix of the snapshot files in the bucket")
	f.StringVar(&s3.Region, "snapshot-s3-region", "", "the bucket's region (default: asked of the endpoint)")
	f.StringVar(&s3.AccessKey, "snapshot-s3-access-key", "", "S3 access key (default: AWS_ACCESS_KEY_ID, then the instance's IAM role)")
	f.StringVar(&s3.SecretKey, "snapshot-s3-secret-key", "", "S3 secret key (default: AWS_SECRET_ACCESS_KEY)")
	f.StringVar(&s3.CAFile, "snapshot-s3-ca", "", "PEM file of a CA to trust for the S3 endpoint's certificate, besides the system's")
	f.BoolVar(&s3.Insecure, "snapshot-s3-insecure", false, "talk plain HTTP to the S3 endpoint (a trusted network only)")
	f.BoolVar(&secretsEncryption, "secrets-encryption", true, "seal Secrets (and the --encryption-resources) with AES-256-GCM before they enter the Raft log or a snapshot; false writes new ones in the clear (sealed ones are still read)")
	f.StringSliceVar(&cfg.EncryptionResources, "encryption-resources", []string{"secrets"}, "resources encrypted at rest: \"secrets\", \"configmaps\", or \"group/resource\" outside the core group")
	f.DurationVar(&cfg.RequestBodyTimeout, "request-body-timeout", apiserver.DefaultRequestBodyTimeout, "time a client has to send a request body; a slower one is answered 408")
	f.StringVar(&agentRuntime, "runtime", "libcontainer", "container runtime of the embedded agent: libcontainer or fake")
	f.IntVar(&kubeletPort, "kubelet-port", 10250, "HTTPS port of the embedded agent's kubelet server")
	addAgentTuningFlags(f, &node)
	addDNSFlags(f, &node.DNS)
	addNetworkFlags(f, &node.Network, false)
	addProxyFlags(f, &node)
	addShipperFlags(f, &node.Shipper)
	addControllerFlags(f, &cfg.Controllers)
	features := server.NewFeatureGate()
	features.AddFlag(f)
	cfg.FeatureGates = features
	addPodSecurityFlags(f, &cfg.PodSecurity)
	addAuditFlags(f, &cfg.Audit)
	addMetricsFlags(f, &cfg.Metrics)
	addLogsFlags(f, &cfg.Logs)
	addSuperviseFlag(f, &supervise)
	// Tuning, hidden: tests and benchmarks use them.
	f.DurationVar(&cfg.HeartbeatTimeout, "raft-heartbeat-timeout", 0, "Raft heartbeat and election timeout (default 600ms)")
	f.Uint64Var(&cfg.SnapshotThreshold, "raft-snapshot-threshold", 0, "log entries between Raft snapshots (default 16384)")
	f.DurationVar(&cfg.SnapshotInterval, "raft-snapshot-interval", 0, "how often to check whether to snapshot (default 10s)")
	f.Uint64Var(&cfg.TrailingLogs, "raft-trailing-logs", 0, "log entries kept after a snapshot (default 10240)")
	f.IntVar(&cfg.WatchRingSize, "watch-cache-size", 0, "watch events kept for resumption (default 100000)")
	f.DurationVar(&cfg.NodeCertLifetime, "node-cert-lifetime", 0, "lifetime of the node certificates this master signs (default 1 year); nodes renew at 70-80% of it")
	_ = f.MarkHidden("node-cert-lifetime")
	for _, n := range []string{"runtime", "kubelet-port", "raft-heartbeat-timeout", "raft-snapshot-threshold", "raft-snapshot-interval", "raft-trailing-logs", "watch-cache-size"} {
		_ = f.MarkHidden(n)
	}
	return cmd
}

func runServer(ctx context.Context, cfg server.Config, node nodeOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s, err := server.New(ctx, cfg)
	if err != nil {
		return explainTokenError(err, "server")
	}
	s.Start()
	node.mode.ready(ctx)
	agentDone := make(chan error, 1)
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	if !cfg.DisableAgent {
		go func() { agentDone <- runEmbeddedAgent(agentCtx, s, node) }()
	}
	agentRunning := !cfg.DisableAgent
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-s.Failed():
	case err := <-agentDone:
		agentRunning = false
		if err != nil {
			slog.Error("embedded agent stopped", "err", err)
		}
		select {
		case <-ctx.Done():
		case failed = <-s.Failed():
		}
	}
	slog.Info("shutting down")
	// Leadership goes first: the agent's clean-up below may take seconds.
	s.StepDown()
	stopAgent()
	if agentRunning {
		// Let the agent finish its clean-up (the masquerade table).
		select {
		case <-agentDone:
		case <-time.After(10 * time.Second):
			slog.Warn("embedded agent did not stop within 10s; shutting the master down without it")
		}
	}
	s.Shutdown()
	if failed != nil {
		return permanentError{failed}
	}
	return nil
}

// permanentError is a fault a restart cannot mend: the process exits with
// supervisor.ExitNoRestart, so its supervisor does not restart it.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// resetCluster runs --cluster-reset: no serving, no supervision; the data
// dir's lock keeps a running master of the same dir out.
func resetCluster(cfg server.Config, restore string) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	release, err := lockDataDir(cfg.DataDir, "server")
	if err != nil {
		return err
	}
	defer release()
	var rep *server.ResetReport
	if restore != "" {
		rep, err = server.ClusterResetRestore(cfg, restore)
	} else {
		rep, err = server.ClusterReset(cfg)
	}
	if err != nil {
		return err
	}
	fmt.Print(rep.String())
	return nil
}
