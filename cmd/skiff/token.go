package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/client"
)

func newTokenCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage agent tokens, which join nodes (and can get nothing but a node certificate)",
		Long: `Manage agent tokens.

An agent token (K10<ca-hash>::<id>.<secret>) lets a node join: with it the
agent gets one node certificate, and nothing else. It is a Kubernetes
bootstrap token, the Secret kube-system/bootstrap-token-<id>. The first
master writes one that does not expire to <data-dir>/agent-token. The server
token (<data-dir>/token) joins masters only; keep it off the nodes.`,
	}
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", "", "admin kubeconfig (default $KUBECONFIG, then "+client.DefaultKubeconfig+")")
	var (
		ttl         time.Duration
		description string
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an agent token and print it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAgentTokens(cmd, kubeconfig, func(ctx context.Context, t *client.AgentTokens) error {
				tok, err := t.Create(ctx, ttl, description)
				if err != nil {
					return err
				}
				fmt.Println(tok)
				return nil
			})
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid (0: no expiry)")
	create.Flags().StringVar(&description, "description", "", "what the token is for")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the agent tokens (without their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAgentTokens(cmd, kubeconfig, func(ctx context.Context, t *client.AgentTokens) error {
				infos, err := t.List(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
				fmt.Fprintln(tw, "ID\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION")
				for _, i := range infos {
					left, expires := "<forever>", "<never>"
					if !i.Expires.IsZero() {
						expires = i.Expires.UTC().Format(time.RFC3339)
						left = "<expired>"
						if d := time.Until(i.Expires); d > 0 {
							left = d.Round(time.Second).String()
						}
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", i.ID, left, expires, strings.Join(i.Usages, ","), i.Description)
				}
				return tw.Flush()
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete agent tokens (nodes that joined with them keep their certificates)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAgentTokens(cmd, kubeconfig, func(ctx context.Context, t *client.AgentTokens) error {
				for _, id := range args {
					if err := t.Delete(ctx, id); err != nil {
						return err
					}
					fmt.Printf("agent token %s deleted\n", strings.SplitN(id, ".", 2)[0])
				}
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

// withAgentTokens runs fn with the agent-token store of the kubeconfig's
// cluster and a 30 s deadline: the part every `skiff token` command shares.
func withAgentTokens(cmd *cobra.Command, kubeconfig string, fn func(context.Context, *client.AgentTokens) error) error {
	t, err := client.NewAgentTokens(client.KubeconfigPath(kubeconfig))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	return fn(ctx, t)
}
