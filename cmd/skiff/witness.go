package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/server"
)

// newWitnessCommand is `skiff witness`: a Raft voter that serves no API.
func newWitnessCommand() *cobra.Command {
	var (
		cfg       server.Config
		tokenFile string
		supervise bool
	)
	cmd := &cobra.Command{
		Use:   "witness",
		Short: "Run a Raft witness: a voter that stores the log and votes, so that two masters and a witness survive the loss of either master",
		Long: `Run a Skiff witness.

A witness joins a cluster as a Raft voter (with the server token) and stores
the log and the state, but serves no Kubernetes API, runs no agent and no
leader work: an election that makes it the leader hands leadership to a
master at once. Two masters and a witness (on any small box, the router)
keep a quorum when either master is lost. See docs/ha.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
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
			if cfg.Join == "" {
				return errors.New("a witness joins an existing cluster: give --join https://MASTER:6443 and the server token")
			}
			u, err := masterURL("--join", cfg.Join)
			if err != nil {
				return err
			}
			cfg.Join = u
			cfg.Witness, cfg.DisableAgent, cfg.DisableScheduler = true, true, true
			cfg.Logger = slog.Default()
			// A witness lives on small boxes: collect garbage early and
			// keep the heap near what the state needs (GOGC/GOMEMLIMIT
			// in the environment win).
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(25)
			}
			if os.Getenv("GOMEMLIMIT") == "" {
				debug.SetMemoryLimit(24 << 20)
			}
			mode, unlock, parent, err := startProcess(cfg.DataDir, "server", supervise)
			if parent || err != nil {
				return err
			}
			defer unlock()
			return runServer(cmd.Context(), cfg, nodeOptions{mode: mode})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/skiff-witness", "directory for the Raft log, snapshots, certificates and token")
	f.StringVar(&cfg.NodeName, "node-name", "", "name of this witness, its Raft ID (default: the hostname)")
	f.StringVar(&cfg.BindAddress, "bind-address", "0.0.0.0", "address the listeners bind to")
	f.StringVar(&cfg.AdvertiseAddress, "advertise-address", "", "address the masters reach this witness at (default: the bind address, or the first non-loopback IPv4)")
	f.IntVar(&cfg.APIPort, "api-port", 6443, "HTTPS port of the internal endpoints (join, health); the Kubernetes API answers 503")
	f.IntVar(&cfg.RaftPort, "raft-port", 6444, "Raft port (mutual TLS)")
	f.IntVar(&cfg.GossipPort, "gossip-port", 7946, "gossip port")
	f.StringVar(&cfg.Join, "join", "", "https://HOST:PORT of a master of the cluster")
	f.StringVar(&cfg.Token, "token", "", "the cluster's server token")
	f.StringVar(&tokenFile, "token-file", "", "file holding the server token")
	addSuperviseFlag(f, &supervise)
	return cmd
}
