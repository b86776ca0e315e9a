package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/client/logrecord"
	"github.com/skiff-io/skiff/gossip"
)

func newAgentCommand() *cobra.Command {
	var (
		opts      nodeOptions
		tokenFile string
		hollowOpt hollowOptions
		supervise bool
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a Skiff node: the kubelet that runs the pods bound to this node",
		Long: `Run a Skiff node (the kubelet).

The agent proves its agent token to a master (after checking the master's CA
against the hash in the token), makes its own keys and gets them signed: a
node client certificate and a kubelet serving certificate, kept in
<data-dir>/agent/ and renewed before they expire, without a restart. It registers its Node, renews its Lease, and runs the
pods bound to the node with the container runtime (libcontainer; "fake"
simulates containers, for hollow nodes and tests).

  skiff agent --server https://MASTER:6443 --token-file <master data-dir>/agent-token

(or a token from skiff token create). The server token (<data-dir>/token)
still works for nodes, but keep it off them: it joins masters.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if tokenFile != "" {
				if opts.Token != "" {
					return errors.New("give --token or --token-file, not both")
				}
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--token-file: %w", err)
				}
				opts.Token = strings.TrimSpace(string(b))
			}
			if opts.Server == "" {
				return errors.New("--server is required: a master's URL, https://HOST:6443")
			}
			if err := opts.checkDisable("ingress"); err != nil {
				return err
			}
			if err := opts.Shipper.check(); err != nil {
				return err
			}
			u, err := masterURL("--server", opts.Server)
			if err != nil {
				return err
			}
			opts.Server = u
			if hollowOpt.Count == 0 && (opts.Runtime == "libcontainer" || opts.Runtime == "") {
				if err := requireRoot("skiff agent"); err != nil {
					return err
				}
			}
			if _, err := gossip.MemberlistConfig(opts.GossipProfile); err != nil {
				return fmt.Errorf("--gossip-profile: %w", err)
			}
			role := "agent"
			if hollowOpt.Count > 0 {
				role = "hollow agent"
				supervise = false // one process simulating many nodes
			}
			mode, unlock, parent, err := startProcess(opts.DataDir, role, supervise)
			if parent || err != nil {
				return err
			}
			defer unlock()
			opts.mode = mode
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			opts.Logger = slog.Default()
			if hollowOpt.Count == 0 && opts.Runtime != "fake" {
				opts.Logger = opts.Shipper.tapLogs(logrecord.KindAgent)
			}
			if hollowOpt.Count > 0 {
				if !cmd.Flags().Changed("gossip-port") {
					opts.GossipPort = 0 // free ports: many nodes share one address
				}
				return runHollowNodes(ctx, opts, hollowOpt)
			}
			return runAgent(ctx, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Server, "server", "", "URL of a master, https://HOST:6443")
	f.StringVar(&opts.Token, "token", "", "agent token (K10<ca-hash>::<id>.<secret>, from skiff token create or a master's <data-dir>/agent-token), needed until the node has credentials")
	f.StringVar(&tokenFile, "token-file", "", "file holding the agent token")
	f.StringVar(&opts.DataDir, "data-dir", "/var/lib/skiff", "directory for node credentials, images, containers and pod logs")
	f.StringVar(&opts.NodeName, "node-name", "", "name of this node (default: the hostname)")
	f.StringVar(&opts.BindAddress, "bind-address", "0.0.0.0", "address the kubelet server binds to; a specific address is also the node's InternalIP")
	f.IntVar(&opts.KubeletPort, "kubelet-port", 10250, "HTTPS port of the kubelet server (logs, exec, attach, port-forward)")
	f.StringVar(&opts.Runtime, "runtime", "libcontainer", "container runtime: libcontainer, or fake (simulated containers, for hollow nodes)")
	f.StringVar(&opts.ManifestDir, "pod-manifest-path", "", "directory of static pod manifests (YAML or JSON Pods), run without any master (default <data-dir>/agent/manifests)")
	addAgentTuningFlags(f, &opts)
	addDNSFlags(f, &opts.DNS)
	addNetworkFlags(f, &opts.Network, true)
	addProxyFlags(f, &opts)
	addShipperFlags(f, &opts.Shipper)
	addHollowFlags(f, &hollowOpt)
	addSuperviseFlag(f, &supervise)
	f.IntVar(&opts.GossipPort, "gossip-port", 7946, "port of gossip with the masters and other nodes (hollow node i takes this port + i; 0: free ports)")
	f.BoolVar(&opts.NoGossip, "disable-gossip", false, "do not join gossip (the node's health then comes from its Lease only)")
	_ = f.MarkHidden("disable-gossip")
	f.StringVar(&opts.GossipProfile, "gossip-profile", "lan", "gossip tuning: lan, or wan for lossy or slow links (docs/gossip.md)")
	f.StringSliceVar(&opts.GossipKeys, "gossip-key", nil, "use this gossip keyring (base64 keys, primary first) instead of the cluster's, which the node gets from the master")
	_ = f.MarkHidden("gossip-key")
	return cmd
}

func addAgentTuningFlags(f flagSet, opts *nodeOptions) {
	f.DurationVar(&opts.LeaseDuration, "node-lease-duration", 0, "node Lease duration, renewed every quarter of it (default 20s)")
	f.DurationVar(&opts.StatusInterval, "node-status-interval", 0, "how often the node status is checked (default 10s)")
	f.DurationVar(&opts.BackoffBase, "restart-backoff", 0, "first CrashLoopBackOff delay (default 10s)")
	for _, n := range []string{"node-lease-duration", "node-status-interval", "restart-backoff"} {
		_ = f.MarkHidden(n)
	}
	f.DurationVar(&opts.StatsInterval, "stats-interval", 10*time.Second, "how often the kubelet collects container, pod and node resource stats (/stats/summary, /metrics/resource, /metrics/cadvisor)")
}

// flagSet is the part of *pflag.FlagSet addAgentTuningFlags uses.
type flagSet interface {
	DurationVar(p *time.Duration, name string, value time.Duration, usage string)
	MarkHidden(name string) error
}
