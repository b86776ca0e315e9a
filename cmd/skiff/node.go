package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/agent"
	"github.com/skiff-io/skiff/agent/shipper"
	"github.com/skiff-io/skiff/agent/stats"
	"github.com/skiff-io/skiff/client"
	"github.com/skiff-io/skiff/nettools/ingress"
	"github.com/skiff-io/skiff/nettools/proxy"
	"github.com/skiff-io/skiff/server"
	"github.com/skiff-io/skiff/server/pki"
)

// nodeOptions configure an agent, standalone or embedded in a master.
type nodeOptions struct {
	Server      string
	Token       string
	DataDir     string
	NodeName    string
	BindAddress string
	KubeletPort int
	Runtime     string
	// ManifestDir holds static pod manifests ("": <data-dir>/agent/manifests).
	ManifestDir string
	// ProxyMode is the service proxy's mode: nftables, userspace or none
	// ("": nftables, none with the fake runtime); ProxyBalance picks
	// endpoints in nftables mode (random, round-robin).
	ProxyMode    string
	ProxyBalance string
	// Disable lists built-in parts turned off (--disable, k3s's
	// spelling): "ingress" on a node; the server also reads "servicelb".
	Disable []string
	// IngressHTTPPort and IngressHTTPSPort: the ingress controller's ports
	// (80, 443; tests pick others).
	IngressHTTPPort, IngressHTTPSPort int

	LeaseDuration  time.Duration
	StatusInterval time.Duration
	BackoffBase    time.Duration
	// StatsInterval: how often the kubelet collects resource stats.
	StatsInterval time.Duration

	DNS dnsOptions

	// Network: pod routes between nodes (libcontainer runtime only).
	Network networkOptions

	// Gossip: the node's serf member (docs/gossip.md). The embedding
	// master is the member of its own node: NoGossip.
	GossipPort    int
	GossipProfile string
	GossipKeys    []string
	NoGossip      bool
	// onAgent, if set, is given the agent once made (the embedded agent
	// hooks the master's gossip member to it).
	onAgent func(*agent.Agent)

	// Set by the embedding master: credentials issued locally (and how to
	// renew them), the node's address and labels.
	Creds      *pki.NodeCredentials
	RenewCreds func(context.Context) (*pki.NodeCredentials, error)
	NodeIP     string
	Labels     map[string]string

	// Shipper: the node's log shipper (shipper.go).
	Shipper shipperOptions

	Logger *slog.Logger

	// mode: supervised child or not (supervise.go); nil in hollow nodes.
	mode *runMode
}

// runAgent gets node credentials (saved ones, or through node bootstrap
// with the token), then runs the kubelet until ctx ends.
func runAgent(ctx context.Context, o nodeOptions) error {
	log := o.Logger
	if o.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node name: %w", err)
		}
		o.NodeName = strings.ToLower(h)
	}
	dataDir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return err
	}
	if o.Runtime == "libcontainer" || o.Runtime == "" {
		// First, before any credential or registration: the second agent
		// of a host stops at once.
		release, err := lockNodeNetwork(dataDir)
		if err != nil {
			return err
		}
		defer release()
	}
	if o.NodeIP == "" {
		o.NodeIP = o.BindAddress
		if ip := net.ParseIP(o.BindAddress); ip == nil || ip.IsUnspecified() {
			if o.NodeIP, err = client.LocalAddressFor(o.Server); err != nil {
				return fmt.Errorf("node address (give --bind-address): %w", err)
			}
		}
	}
	credDir := filepath.Join(dataDir, "agent")
	addresses := []string{o.NodeIP}
	creds, saveDir := o.Creds, credDir
	renew := o.RenewCreds
	if creds == nil {
		creds, err = client.LoadNodeCredentials(credDir, o.NodeName, addresses)
		if err != nil {
			if o.Token == "" {
				return fmt.Errorf("no usable node credentials in %s (%w) and no --token to get new ones", credDir, err)
			}
			creds, err = bootstrapWithRetry(ctx, o, addresses)
			if err != nil {
				return explainTokenError(err, "agent")
			}
			if err := client.SaveNodeCredentials(credDir, creds); err != nil {
				return err
			}
			log.Info("node credentials issued", "node", o.NodeName, "dir", credDir)
		}
	} else {
		saveDir = "" // issued in-process at every start: nothing on disk
	}
	certs, err := client.NewNodeCertificates(saveDir, creds)
	if err != nil {
		return err
	}
	var failover *client.Failover
	if o.Creds == nil {
		// A standalone agent knows every master and dials a live one
		// (docs/agent.md, "Masters lost"), renewals included; an embedded
		// agent talks to its own master, in its own process.
		if failover, err = client.NewFailover(filepath.Join(credDir, "masters.json"), o.Server, log); err != nil {
			return err
		}
		certs.UseDialer(failover.DialContext, client.MasterServerName)
	} else if failover, err = client.NewFailover(filepath.Join(credDir, "masters.json"), o.Server, log); err != nil {
		// An embedded agent talks to its own master, but its log shipper
		// delivers to every master: it learns them the same way.
		return err
	}
	if renew == nil {
		renew = func(ctx context.Context) (*pki.NodeCredentials, error) {
			return certs.Renew(ctx, o.Server, o.NodeName, addresses)
		}
	}
	renewCtx, stopRenew := context.WithCancel(ctx)
	renewDone := make(chan struct{})
	defer func() { stopRenew(); <-renewDone }()
	go func() {
		defer close(renewDone)
		certs.Run(renewCtx, renew, log)
	}()
	restCfg, err := certs.RESTConfig(o.Server)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	evCfg := rest.CopyConfig(restCfg)
	evCfg.QPS, evCfg.Burst = 50, 100
	evCS, err := kubernetes.NewForConfig(evCfg)
	if err != nil {
		return err
	}
	o.mode.recordRestart(ctx, evCS, o.NodeName, log)
	servingTLS, err := certs.ServingTLS()
	if err != nil {
		return err
	}
	var pn *podNetwork
	if o.Runtime == "libcontainer" || o.Runtime == "" {
		if pn, err = newPodNetwork(o, cs); err != nil {
			return err
		}
	}
	// Pods reach loopback endpoints (a master bound to 127.0.0.1) through
	// the nftables proxy only, which guards 127.0.0.0/8.
	nftProxy := o.ProxyMode == "" || o.ProxyMode == string(proxy.ModeNFTables)
	rt, images, err := newRuntime(o.Runtime, dataDir, pn.PodMTU(), nftProxy, log)
	if err != nil {
		return err
	}
	// The proxy's and the DNS server's metrics, served at the kubelet's
	// /metrics (scraped by every master as job kubelet).
	parts := prometheus.NewRegistry()
	stopDNS, err := startClusterDNS(ctx, o.DNS, o.Runtime, o.NodeIP, cs, parts, log)
	if err != nil {
		return err
	}
	defer stopDNS()
	var podLabels func(ns, name, uid string) map[string]string
	var sh *shipper.Shipper
	if o.Runtime != "fake" {
		if sh, err = newShipper(o, dataDir, failover, certs, &podLabels); err != nil {
			return err
		}
	}
	cfg := agent.Config{
		NodeName: o.NodeName, DataDir: dataDir, NodeIP: o.NodeIP, BindAddress: o.BindAddress,
		KubeletPort: o.KubeletPort, ServingTLS: servingTLS, Client: cs, EventClient: evCS, Labels: o.Labels,
		Runtime: rt, Images: images, Logger: log, ManifestDir: o.ManifestDir,
		LeaseDuration: o.LeaseDuration, NodeStatusInterval: o.StatusInterval, BackoffBase: o.BackoffBase,
		StatsInterval: o.StatsInterval, Metrics: parts,
		ClusterDNS: o.DNS.clusterDNS(), ClusterDomain: o.DNS.ClusterDomain, ResolvConf: o.DNS.ResolvConf,
	}
	if o.Runtime == "fake" {
		// Simulated containers need no tmpfs for their volumes, and
		// have made-up resource use.
		cfg.Mounter = agent.DirMounter{}
		cfg.StatsCollector = stats.NewFakeCollector()
	}
	if sh != nil {
		cfg.LogShipper = sh
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	if sh != nil {
		podLabels = a.PodLabels
		shCtx, stopShipper := context.WithCancel(ctx)
		wait := runShipper(shCtx, sh)
		defer func() { stopShipper(); wait() }()
	}
	if o.onAgent != nil {
		o.onAgent(a)
	}
	log.Info("agent starting", "node", o.NodeName, "server", o.Server, "node-ip", o.NodeIP, "kubelet", a.Addr(), "runtime", o.Runtime)
	stopProxy, err := startProxy(ctx, o, cs, dataDir, parts)
	if err != nil {
		return err
	}
	defer stopProxy()
	stopIngress, err := startIngress(ctx, o, cs)
	if err != nil {
		return err
	}
	defer stopIngress()
	pn.Start(ctx)
	defer pn.Wait()
	var onMasters func([]string)
	if failover != nil {
		if o.Creds == nil {
			onMasters = func(addrs []string) { failover.SetSource("gossip", addrs) }
		}
		epDone := make(chan struct{})
		epCtx, stopEP := context.WithCancel(ctx)
		defer func() { stopEP(); <-epDone }()
		go func() { defer close(epDone); failover.WatchEndpoints(epCtx, cs, 10*time.Second) }()
	}
	if !o.NoGossip {
		gctx, stopGossip := context.WithCancel(ctx)
		gossipDone := make(chan struct{})
		// On the way out, let gossip announce the planned stop.
		defer func() { stopGossip(); <-gossipDone }()
		go func() {
			defer close(gossipDone)
			err := agent.RunGossip(gctx, agent.GossipConfig{
				NodeName: o.NodeName, DataDir: filepath.Join(credDir, "gossip"), BindAddr: o.NodeIP, Port: o.GossipPort,
				Profile: o.GossipProfile, KubeletAddr: net.JoinHostPort(o.NodeIP, strconv.Itoa(o.KubeletPort)),
				Client: cs.CoreV1().RESTClient(), Keys: o.GossipKeys, Logger: log, OnSuspected: a.HeartbeatBurst,
				OnMasters: onMasters,
			})
			if err != nil && gctx.Err() == nil {
				log.Error("gossip stopped", "err", err)
			}
		}()
	}
	o.mode.ready(ctx)
	return a.Run(ctx)
}

// startProxy runs the node's service proxy (nettools/proxy) beside the
// kubelet. Hollow nodes (the fake runtime) run none: their pods have no
// network.
func startProxy(ctx context.Context, o nodeOptions, cs kubernetes.Interface, dataDir string, reg prometheus.Registerer) (func(), error) {
	mode := o.ProxyMode
	if mode == "" {
		mode = string(proxy.ModeNFTables)
		if o.Runtime == "fake" {
			mode = "none"
		}
	}
	if mode == "none" {
		return func() {}, nil
	}
	p, err := proxy.New(proxy.Config{Client: cs, NodeName: o.NodeName, Mode: proxy.Mode(mode),
		Balance: proxy.Balance(o.ProxyBalance), Logger: o.Logger, Registerer: reg,
		StateFile: filepath.Join(dataDir, "agent", "proxy", "state.txt")})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Run(ctx); err != nil && ctx.Err() == nil {
			o.Logger.Error("service proxy stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// checkDisable refuses a --disable value that names no part of the
// command (a typo would otherwise leave the part running).
func (o nodeOptions) checkDisable(parts ...string) error {
	for _, d := range o.Disable {
		if !slices.Contains(parts, d) {
			return fmt.Errorf("--disable %q: not a built-in part here; one of %s", d, strings.Join(parts, ", "))
		}
	}
	return nil
}

// disabled reports whether --disable names part.
func (o nodeOptions) disabled(part string) bool {
	for _, d := range o.Disable {
		if d == part {
			return true
		}
	}
	return false
}

// startIngress runs the node's ingress controller (nettools/ingress)
// unless --disable ingress or hollow nodes; a disabled node removes its
// ingress annotation so that the leader leaves its address out of the
// Ingresses' status. A port already taken is logged and retried, not
// fatal: the kubelet matters more.
func startIngress(ctx context.Context, o nodeOptions, cs kubernetes.Interface) (func(), error) {
	if o.Runtime == "fake" {
		return func() {}, nil
	}
	if o.disabled("ingress") {
		go func() {
			if err := ingress.PublishNode(ctx, cs, o.NodeName, false, ""); err != nil && ctx.Err() == nil {
				o.Logger.Warn("remove the ingress annotation", "err", err)
			}
		}()
		return func() {}, nil
	}
	// All of the node's addresses, but with the userspace proxy only the
	// node address: that proxy listens on every cluster IP (held on lo) and
	// port, port 80 among them, which a wildcard listener would take.
	addr := ""
	if o.ProxyMode == string(proxy.ModeUserspace) {
		addr = o.NodeIP
	}
	ic, err := ingress.New(ingress.Config{Client: cs, NodeName: o.NodeName, Address: addr, HTTPPort: o.IngressHTTPPort,
		HTTPSPort: o.IngressHTTPSPort, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			err := ic.Listen()
			if err == nil {
				err = ic.Run(ctx)
			}
			if ctx.Err() != nil {
				return
			}
			o.Logger.Error("ingress controller stopped; retrying in 10s", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Second):
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}

// addProxyFlags adds the service proxy's flags (agent and server), and
// the ingress controller's.
func addProxyFlags(f *pflag.FlagSet, o *nodeOptions) {
	f.StringSliceVar(&o.Disable, "disable", nil, "built-in parts to turn off: ingress (the node's ingress controller); on a server also servicelb (LoadBalancer Service addresses) and local-storage (the default local-path StorageClass)")
	f.IntVar(&o.IngressHTTPPort, "ingress-http-port", 80, "HTTP port of the ingress controller")
	f.IntVar(&o.IngressHTTPSPort, "ingress-https-port", 443, "HTTPS port of the ingress controller")
	_ = f.MarkHidden("ingress-http-port")
	_ = f.MarkHidden("ingress-https-port")
	f.StringVar(&o.ProxyMode, "proxy-mode", "", "service proxy mode: nftables, userspace or none (default nftables; none with --runtime fake)")
	f.StringVar(&o.ProxyBalance, "proxy-balance", "random", "how the nftables mode picks a Service endpoint: random or round-robin")
}

// bootstrapWithRetry gets the node's credentials with its token, retrying
// while the master cannot be reached. A refusal does not get better by
// retrying, except a 401 in the first half minute: a token just made (or
// the first master's agent token) may not have reached every master yet.
func bootstrapWithRetry(ctx context.Context, o nodeOptions, addresses []string) (*pki.NodeCredentials, error) {
	backoff := 500 * time.Millisecond
	start := time.Now()
	for {
		bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		creds, err := client.BootstrapNode(bctx, o.Server, o.Token, o.NodeName, addresses)
		cancel()
		if err == nil {
			return creds, nil
		}
		if errors.Is(err, pki.ErrInvalidToken) || errors.Is(err, pki.ErrCAMismatch) || errors.Is(err, pki.ErrUntrustedServer) ||
			errors.Is(err, client.ErrCertificateRefused) ||
			apierrors.IsForbidden(err) || apierrors.IsBadRequest(err) || apierrors.IsInvalid(err) ||
			(apierrors.IsUnauthorized(err) && time.Since(start) > 30*time.Second) {
			return nil, err
		}
		if apierrors.IsUnauthorized(err) {
			// A token made a moment ago may not have reached this master.
			o.Logger.Warn("the master refused the token; retrying for 30s in case it is new", "server", o.Server, "err", err)
		} else {
			o.Logger.Warn("node bootstrap failed, retrying", "server", o.Server, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// runEmbeddedAgent runs the agent of a master's own node, with node
// credentials the master issues itself (no token round trip).
func runEmbeddedAgent(ctx context.Context, s *server.Server, o nodeOptions) error {
	cfg := s.Config()
	o.Server = s.APIURL()
	o.DataDir = cfg.DataDir
	o.NodeName = cfg.NodeName
	o.NodeIP = cfg.AdvertiseAddress
	o.Network.ClusterCIDR = cfg.ClusterCIDR
	o.BindAddress = cfg.BindAddress
	o.Logger = cfg.Logger
	creds, err := s.NodeCredentials(o.NodeName, []string{cfg.AdvertiseAddress, cfg.BindAddress})
	if err != nil {
		return err
	}
	o.Creds = creds
	o.RenewCreds = func(context.Context) (*pki.NodeCredentials, error) {
		return s.NodeCredentials(o.NodeName, []string{cfg.AdvertiseAddress, cfg.BindAddress})
	}
	o.Labels = map[string]string{"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true"}
	o.NoGossip = true // the master's own member stands for its node
	o.onAgent = func(a *agent.Agent) { s.SetGossipSuspectedHook(a.HeartbeatBurst) }
	return runAgent(ctx, o)
}
