// Package agent is Skiff's kubelet: it registers its Node, renews its
// Lease, watches the pods bound to it and runs them through the CRI-shaped
// seams of package runtime (sandbox, images, containers, probes, volumes),
// reporting their status and events to the API. It also serves the kubelet
// HTTPS endpoints (logs, exec, attach, port-forward) that the API server
// proxies to.
package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/agent/stats"
	"github.com/skiff-io/skiff/runtime"
)

// Version is what the Node reports as its kubelet version.
const Version = "v1.33.0-skiff"

// Config is everything an agent needs; cmd/skiff fills it from flags (or
// from the embedding master).
type Config struct {
	// NodeName is the Node's name (the hostname by default).
	NodeName string
	// DataDir is the agent's data dir; the agent keeps its state under
	// DataDir/agent and pod logs under DataDir/pods.
	DataDir string
	// NodeIP is the address the Node reports (InternalIP) and the kubelet
	// server is reached at.
	NodeIP string
	// BindAddress is where the kubelet server listens (NodeIP if empty).
	BindAddress string
	// KubeletPort is the kubelet HTTPS port (10250).
	KubeletPort int
	// ServingTLS is the kubelet server's TLS config: a serving certificate
	// and the cluster CA for client certificates. Nil disables the server.
	ServingTLS *tls.Config

	// Client talks to the API with the node's credentials.
	Client kubernetes.Interface
	// EventClient sends events (Client if nil); a client of its own keeps
	// bursts of events from delaying status updates behind the client-side
	// rate limit.
	EventClient kubernetes.Interface
	// Pods, if set, replaces the agent's own watch of the pods bound to
	// its node (hollow nodes share one watch).
	Pods PodSource
	// Capacity, if set, is reported instead of the machine's CPU, memory
	// and pods (hollow nodes).
	Capacity corev1.ResourceList
	// Labels are added to the Node (e.g. the control-plane role).
	Labels map[string]string

	Runtime runtime.Runtime
	Images  runtime.ImageService
	// Mounter mounts tmpfs for memory-backed volumes; the host's by default.
	Mounter Mounter

	// ClusterDNS and ClusterDomain go into pods' resolv.conf
	// (dnsPolicy ClusterFirst). Without ClusterDNS pods get the node's.
	ClusterDNS    []string
	ClusterDomain string
	// ResolvConf is the node's resolver file pods with dnsPolicy Default
	// get (the kubelet's --resolv-conf); /etc/resolv.conf, or
	// systemd-resolved's upstream file when that names only its stub.
	ResolvConf string
	// ManifestDir holds static pod manifests (the kubelet's
	// --pod-manifest-path): <data-dir>/agent/manifests by default.
	ManifestDir string
	// MaxPods is the pods capacity (110).
	MaxPods int
	// LocalPathDir is where the built-in local-path storage makes volume
	// directories on this node (<data-dir>/storage), published in the
	// Node's skiff.io/local-path-dir annotation (agent/localpath).
	LocalPathDir string

	// StatsCollector measures the node's resource use (agent/stats); the
	// cgroup and /proc collector when nil (hollow nodes pass a fake).
	StatsCollector stats.Collector
	// Metrics, if set, holds the metrics of the node's other parts (the
	// service proxy's, the cluster DNS's), served with the kubelet's own
	// at its /metrics.
	Metrics prometheus.Gatherer

	// Timing; zero values take the defaults.
	LeaseDuration       time.Duration // 20s, renewed every quarter of it
	NodeStatusInterval  time.Duration // 10s
	RelistPeriod        time.Duration // 1s: how often the runtime is polled for changes
	ResyncInterval      time.Duration // 10s: every pod is synced at least this often
	HousekeepingPeriod  time.Duration // 10s: orphans and garbage
	VolumeRefreshPeriod time.Duration // 10s: configMap/secret volumes rewritten when changed
	StatsInterval       time.Duration // 10s: resource stats collected (the kubelet's housekeeping interval)
	// BackoffBase and BackoffMax bound the CrashLoopBackOff and image pull
	// back-off (10s and 5m, as the kubelet).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// ProbeSecond is how long one "second" of a probe's timing fields
	// lasts (1s; tests shrink it).
	ProbeSecond time.Duration

	// LogShipper, if set, is the node's log shipper (agent/shipper): a
	// deleted pod's log directory is handed to it (it removes the
	// directory once every file is in its spool) instead of removed, and
	// its metrics join the kubelet's /metrics.
	LogShipper LogShipper

	Logger *slog.Logger
}

// LogShipper is what the kubelet needs of the node's log shipper.
type LogShipper interface {
	ReleaseLogDir(dir string)
	Collectors() []prometheus.Collector
}

func (c *Config) setDefaults() error {
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node name: %w", err)
		}
		c.NodeName = h
	}
	if c.DataDir == "" {
		c.DataDir = "/var/lib/skiff"
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return err
	}
	c.DataDir = abs
	if c.ManifestDir == "" {
		c.ManifestDir = filepath.Join(c.DataDir, "agent", "manifests")
	}
	if c.ManifestDir, err = filepath.Abs(c.ManifestDir); err != nil {
		return err
	}
	if c.LocalPathDir == "" {
		c.LocalPathDir = filepath.Join(c.DataDir, "storage")
	}
	if c.LocalPathDir, err = filepath.Abs(c.LocalPathDir); err != nil {
		return err
	}
	if c.Client == nil || c.Runtime == nil || c.Images == nil {
		return errors.New("agent: Client, Runtime and Images are required")
	}
	if c.NodeIP == "" {
		c.NodeIP = "127.0.0.1"
	}
	if net.ParseIP(c.NodeIP) == nil {
		return fmt.Errorf("node IP %q is not an IP address", c.NodeIP)
	}
	if c.BindAddress == "" {
		c.BindAddress = c.NodeIP
	}
	if c.KubeletPort == 0 {
		c.KubeletPort = 10250
	}
	if c.Mounter == nil {
		c.Mounter = hostMounter{}
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.MaxPods == 0 {
		c.MaxPods = 110
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.LeaseDuration, 20*time.Second)
	def(&c.NodeStatusInterval, 10*time.Second)
	def(&c.RelistPeriod, time.Second)
	def(&c.ResyncInterval, 10*time.Second)
	def(&c.HousekeepingPeriod, 10*time.Second)
	def(&c.VolumeRefreshPeriod, 10*time.Second)
	def(&c.StatsInterval, 10*time.Second)
	def(&c.BackoffBase, 10*time.Second)
	def(&c.BackoffMax, 5*time.Minute)
	def(&c.ProbeSecond, time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// agentDir holds the agent's own state (credentials, pod volumes).
func (c *Config) agentDir() string { return filepath.Join(c.DataDir, "agent") }

// podDir holds a pod's volumes and its /etc/hosts and resolv.conf.
func (c *Config) podDir(uid string) string { return filepath.Join(c.agentDir(), "pods", uid) }

// podLogDir is where the runtime writes a pod's container logs
// (<data-dir>/pods/<namespace>_<name>_<uid>/<container>/N.log).
func (c *Config) podLogDir(namespace, name, uid string) string {
	return filepath.Join(c.DataDir, "pods", namespace+"_"+name+"_"+uid)
}
