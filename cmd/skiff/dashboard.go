package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/client"
)

func newDashboardCommand() *cobra.Command {
	var (
		kubeconfig string
		a          = client.DashboardAccess{}
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print the web dashboard's URL and a bearer token to log in with",
		Long: `Print the URL of the web dashboard on a master and a bearer token for it.

The token comes from the TokenRequest API for a service account (made if
missing, in --namespace, named dashboard-<role> unless --service-account)
bound cluster-wide to --cluster-role and to skiff:dashboard (read nodes,
node metrics and the masters' membership). The default role, view, reads
workloads but changes nothing and cannot read Secrets; --cluster-role edit
allows scaling, restarts and deletes; --cluster-role cluster-admin gives
an admin token. Paste the token on the dashboard's login page.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			l, err := client.DashboardToken(ctx, client.KubeconfigPath(kubeconfig), a)
			if err != nil {
				return err
			}
			fmt.Printf("url: %s\ntoken: %s\n", l.URL, l.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "service account %s, cluster role %s, token valid until %s\n",
				l.ServiceAccount, a.ClusterRole, l.Expires.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "admin kubeconfig (default $KUBECONFIG, then "+client.DefaultKubeconfig+")")
	cmd.Flags().StringVar(&a.ClusterRole, "cluster-role", "view", "ClusterRole bound to the token's service account (view, edit, admin, cluster-admin, or your own)")
	cmd.Flags().StringVar(&a.Namespace, "namespace", "kube-system", "namespace of the service account")
	cmd.Flags().StringVar(&a.ServiceAccount, "service-account", "", "service account name (default dashboard-<cluster role>)")
	cmd.Flags().DurationVar(&a.Expiry, "expiry", 8*time.Hour, "how long the token is valid (10m minimum)")
	return cmd
}
