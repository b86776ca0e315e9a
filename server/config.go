// Package server wires a Skiff master: Raft over mutual TLS, the FSM, the
// Kubernetes API, joining, forwarding to the leader and leader-only work.
package server

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/component-base/featuregate"

	"github.com/skiff-io/skiff/server/admission"
	"github.com/skiff-io/skiff/server/auditlog"
	"github.com/skiff-io/skiff/server/controller/manager"
	"github.com/skiff-io/skiff/server/servicealloc"
	"github.com/skiff-io/skiff/server/snapshot"
)

// Config is everything a master needs; cmd/skiff fills it from flags.
type Config struct {
	DataDir          string
	NodeName         string
	BindAddress      string
	AdvertiseAddress string
	// TLSSANs are extra names and addresses in the master's serving
	// certificate (a load balancer's, another address of the host).
	TLSSANs    []string
	APIPort    int
	RaftPort   int
	GossipPort int
	// GossipProfile is the gossip tuning, lan (default) or wan
	// (docs/gossip.md).
	GossipProfile string
	// KubeletPort is the embedded agent's kubelet port (a gossip tag).
	KubeletPort int
	// DeadServerCleanup, if positive: the leader removes a master that
	// gossip has reported down for this long from the Raft
	// configuration, when the remaining voters keep a quorum.
	DeadServerCleanup time.Duration
	// Join is the URL of a master of an existing cluster (https://HOST:PORT).
	Join string
	// Token is the join token (K10<cahash>::server:<secret>) or a bare secret.
	Token        string
	DisableAgent bool
	// Witness: a Raft voter that stores the log and votes but serves no
	// API, runs no agent and hands leadership away (witness.go).
	Witness bool
	// DisableScheduler: the leader runs no scheduler (another scheduler
	// binds the pods).
	DisableScheduler bool
	// DisableLocalStorage: the leader does not create the default
	// local-path StorageClass (docs/storage.md).
	DisableLocalStorage bool
	// ClusterCIDR is the pod address range; the leader gives each Node a
	// /24 of it as spec.podCIDR.
	ClusterCIDR string
	// ServiceCIDR is the Service cluster IP range (10.43.0.0/16) and
	// NodePortRange the node port range ("30000-32767").
	ServiceCIDR   string
	NodePortRange string
	// ServiceAccountIssuer is the "iss" of service-account tokens
	// (auth.DefaultIssuer if empty); APIAudiences the audiences the API
	// accepts (the issuer if empty); ServiceAccountMaxTokenExpiration
	// bounds TokenRequest lifetimes (48h if 0).
	ServiceAccountIssuer             string
	APIAudiences                     []string
	ServiceAccountMaxTokenExpiration time.Duration
	// NodeCertLifetime is how long the node certificates this master signs
	// are valid (pki.DefaultNodeCertLifetime if 0); agents renew at 70-80%
	// of it. Short values are for tests.
	NodeCertLifetime time.Duration
	// Controllers tune the leader's controllers (server/controller/manager).
	Controllers manager.Options
	// FeatureGates are the master's feature gates (NewFeatureGate's
	// defaults if nil): --feature-gates.
	FeatureGates featuregate.FeatureGate
	// PodSecurity is the PodSecurity admission configuration: default
	// levels and exemptions (nil: admission.DefaultPodSecurityConfig,
	// enforce baseline, warn and audit restricted, kube-system exempt).
	PodSecurity *admission.PodSecurityConfig

	// Cluster snapshots (snapshots.go): where they are kept (default
	// <data-dir>/snapshots), the leader's cron schedule ("" for none) and
	// how many scheduled ones are kept (DefaultSnapshotRetention if 0).
	ClusterSnapshotDir       string
	ClusterSnapshotSchedule  string
	ClusterSnapshotRetention int
	// SnapshotCopyDir and SnapshotS3 (nil: none) also keep a copy of
	// every snapshot this master takes, beyond the masters' disks
	// (snapshot_targets.go).
	SnapshotCopyDir string
	SnapshotS3      *snapshot.S3Config

	// DisableSecretsEncryption turns encryption at rest off: objects of
	// EncryptionResources (default: secrets) are then written as they are
	// (objects sealed before are still read). docs/security.md.
	DisableSecretsEncryption bool
	// EncryptionResources are the resources sealed before they enter the
	// Raft log or a snapshot ("secrets"; "group/resource" otherwise).
	EncryptionResources []string

	// API request limits (server/apiserver/limits.go, docs/api.md):
	// read-only and mutating requests in flight, watches open per user (0:
	// no limit; the flags default to apiserver.DefaultMaxRequestsInFlight
	// and the like), and the time to receive a request body
	// (apiserver.DefaultRequestBodyTimeout if 0).
	MaxRequestsInFlight         int
	MaxMutatingRequestsInFlight int
	MaxWatchesPerUser           int
	RequestBodyTimeout          time.Duration

	// Audit is the audit log (server/auditlog, docs/security.md): an
	// empty Path turns it off; the skiff server flags default it to
	// <data-dir>/audit/audit.log with the built-in policy.
	Audit auditlog.Options

	// Metrics is the metrics store and its scraping (monitoring.go).
	Metrics MetricsConfig
	// Logs is the log store (logging.go).
	Logs LogsConfig

	// Raft tuning; zero values take the defaults below.
	HeartbeatTimeout time.Duration
	// heartbeatExplicit: HeartbeatTimeout was given, so no disk
	// measurement changes it (disk.go).
	heartbeatExplicit bool
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// WatchRingSize is the number of watch events kept for resumption.
	WatchRingSize int

	Logger *slog.Logger
}

// DefaultNodePortRange is the default node port range.
const DefaultNodePortRange = "30000-32767"

// DefaultClusterCIDR is the default pod address range.
const DefaultClusterCIDR = "10.42.0.0/16"

const (
	defaultHeartbeatTimeout  = 600 * time.Millisecond
	defaultSnapshotThreshold = 16384
	defaultSnapshotInterval  = 10 * time.Second
	defaultTrailingLogs      = 10240
)

func (c *Config) setDefaults() error {
	if c.DataDir == "" {
		c.DataDir = "/var/lib/skiff"
	}
	if c.EncryptionResources == nil {
		c.EncryptionResources = []string{"secrets"}
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	c.DataDir = abs
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node name: %w", err)
		}
		c.NodeName = h
	}
	if c.BindAddress == "" {
		c.BindAddress = "0.0.0.0"
	}
	if c.APIPort == 0 {
		c.APIPort = 6443
	}
	if c.RaftPort == 0 {
		c.RaftPort = 6444
	}
	if c.GossipPort == 0 {
		c.GossipPort = 7946
	}
	if c.KubeletPort == 0 {
		c.KubeletPort = 10250
	}
	if c.AdvertiseAddress == "" {
		c.AdvertiseAddress = c.BindAddress
		if ip := net.ParseIP(c.BindAddress); ip == nil || ip.IsUnspecified() {
			c.AdvertiseAddress = firstHostIP()
		}
	}
	if net.ParseIP(c.AdvertiseAddress) == nil {
		return fmt.Errorf("advertise address %q is not an IP address", c.AdvertiseAddress)
	}
	if c.ClusterCIDR == "" {
		c.ClusterCIDR = DefaultClusterCIDR
	}
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = servicealloc.DefaultServiceCIDR
	}
	if c.NodePortRange == "" {
		c.NodePortRange = DefaultNodePortRange
	}
	if _, err := servicealloc.New(c.ServiceCIDR, c.NodePortRange); err != nil {
		return err
	}
	if c.HeartbeatTimeout != 0 {
		c.heartbeatExplicit = true
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = defaultHeartbeatTimeout
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = defaultSnapshotThreshold
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = defaultSnapshotInterval
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = defaultTrailingLogs
	}
	if c.PodSecurity != nil {
		if err := admission.ValidatePodSecurityConfig(c.PodSecurity); err != nil {
			return fmt.Errorf("pod security configuration: %w", err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func (c *Config) apiURL() string {
	return "https://" + net.JoinHostPort(c.AdvertiseAddress, strconv.Itoa(c.APIPort))
}

func (c *Config) raftAddr() string {
	return net.JoinHostPort(c.AdvertiseAddress, strconv.Itoa(c.RaftPort))
}

func (c *Config) tlsDir() string    { return filepath.Join(c.DataDir, "tls") }
func (c *Config) raftDir() string   { return filepath.Join(c.DataDir, "raft") }
func (c *Config) tokenPath() string { return filepath.Join(c.DataDir, "token") }

// encryptionKeyPath is the root key of encryption at rest.
func (c *Config) encryptionKeyPath() string { return filepath.Join(c.tlsDir(), "encryption.key") }

// agentTokenPath holds the agent token the first master made.
func (c *Config) agentTokenPath() string { return filepath.Join(c.DataDir, "agent-token") }
func (c *Config) kubeconfigPath() string {
	return filepath.Join(c.DataDir, "kubeconfig.yaml")
}

// firstHostIP returns the first non-loopback IPv4 address of this host, or
// 127.0.0.1.
func firstHostIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
