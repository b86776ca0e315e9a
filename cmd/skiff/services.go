package main

import (
	"context"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-io/skiff/client"
	"github.com/skiff-io/skiff/nettools/proxy"
)

func newServicesCommand() *cobra.Command {
	var (
		kubeconfig, node, balance string
		rules                     bool
	)
	cmd := &cobra.Command{
		Use:   "services",
		Short: "Show what the service proxy programs: service ports, ready endpoints, and the nftables rules",
		Long: `Show what the service proxy of a node programs, computed from the API the
same way the proxy does: each service port with its cluster IP, node port,
traffic policies and ready endpoints; with --rules, the nftables table
(ip skiff-proxy) in nft syntax. The proxy also writes what it programmed to
<data-dir>/agent/proxy/state.txt after every sync.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := clientcmd.BuildConfigFromFlags("", client.KubeconfigPath(kubeconfig))
			if err != nil {
				return err
			}
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			return proxy.Inspect(ctx, cs, node, proxy.Balance(balance), rules, os.Stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "admin kubeconfig (default $KUBECONFIG, then "+client.DefaultKubeconfig+")")
	f.StringVar(&node, "node", "", "the node whose view to show (which endpoints are local)")
	f.StringVar(&balance, "balance", "random", "the node's --proxy-balance (for --rules)")
	f.BoolVar(&rules, "rules", false, "print the nftables table instead of the summary")
	return cmd
}
