package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/client"
	"github.com/skiff-io/skiff/server"
)

func newClusterCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect and change the set of masters",
	}
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", "", "admin kubeconfig (default $KUBECONFIG, then "+client.DefaultKubeconfig+")")

	members := &cobra.Command{
		Use:   "members",
		Short: "List the masters: name, Raft address, role and state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := client.NewMaster(client.KubeconfigPath(kubeconfig))
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			body, err := m.Do(ctx, "GET", "/internal/v1/members")
			if err != nil {
				return err
			}
			var rows []server.MemberStatus
			if err := json.Unmarshal(body, &rows); err != nil {
				return fmt.Errorf("decode members: %w", err)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tRAFT ADDRESS\tROLE\tSUFFRAGE\tSTATE\tAPI")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.RaftAddress, r.Role, r.Suffrage, r.State, r.APIURL)
			}
			return tw.Flush()
		},
	}
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a master from the cluster (its Raft vote and record)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := client.NewMaster(client.KubeconfigPath(kubeconfig))
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			if _, err := m.Do(ctx, "DELETE", "/internal/v1/members/"+url.PathEscape(args[0])); err != nil {
				return err
			}
			fmt.Printf("master %s removed\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(members, remove)
	return cmd
}
