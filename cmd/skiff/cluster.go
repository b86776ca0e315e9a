package main

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/client"
	"github.com/skiff-io/skiff/gossip"
	"github.com/skiff-io/skiff/server"
)

func newClusterCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect and change the set of masters",
	}
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", "", "admin kubeconfig (default $KUBECONFIG, then "+client.DefaultKubeconfig+")")
	cmd.AddCommand(newAddonsCommand(&kubeconfig))

	members := &cobra.Command{
		Use:   "members",
		Short: "List the masters (Raft voters: address, role, state) and the gossip members (masters and nodes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var rows []server.MemberStatus
			if err := adminRequest(kubeconfig, "GET", "/internal/v1/members", 30*time.Second, "members", &rows); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tRAFT ADDRESS\tROLE\tSUFFRAGE\tSTATE\tAPI")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.RaftAddress, r.Role, r.Suffrage, r.State, r.APIURL)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			printQuorumHint(rows)
			var gms []gossip.Member
			if err := adminRequest(kubeconfig, "GET", "/internal/v1/gossip/members", 30*time.Second, "gossip members", &gms); err != nil {
				return fmt.Errorf("gossip members: %w", err)
			}
			fmt.Println()
			tw = tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "GOSSIP MEMBER\tROLE\tSTATUS\tSINCE\tADDRESS\tKUBELET")
			for _, g := range gms {
				since := "-"
				if !g.Since.IsZero() {
					since = time.Since(g.Since).Round(time.Second).String()
				}
				kubelet := g.Tags[gossip.TagKubelet]
				if kubelet == "" {
					kubelet = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.Name, g.Role(), g.Status, since, g.Addr, kubelet)
			}
			return tw.Flush()
		},
	}
	gossipKey := &cobra.Command{
		Use:   "gossip-key",
		Short: "Manage the gossip encryption keyring",
	}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Install a new random gossip key on every member, make it the primary key, and remove the old ones",
		Long: `Rotate the gossip encryption key.

Every alive member (masters and nodes) installs a new random key, switches
to it, and drops the old keys; each member writes its keyring to its data
dir. A member that was down during the rotation gets the current keyring
from a master when it comes back; nodes joining later get it at
registration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var res gossip.RotateResult
			if err := adminRequest(kubeconfig, "POST", "/internal/v1/gossip/rotate", 2*time.Minute, "rotation result", &res); err != nil {
				return err
			}
			fmt.Printf("gossip key rotated: new key %s on %d members, %d old key(s) removed\n", res.Fingerprint, res.Members, res.Removed)
			return nil
		},
	}
	gossipKey.AddCommand(rotate)
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a master from the cluster (its Raft vote and record)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := adminRequest(kubeconfig, "DELETE", "/internal/v1/members/"+url.PathEscape(args[0]), 90*time.Second, "", nil); err != nil {
				return err
			}
			fmt.Printf("master %s removed\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(members, remove, gossipKey, newSnapshotCommand(&kubeconfig))
	return cmd
}

// printQuorumHint says what to do when no master leads: which voters are
// missing, and the recovery if they are lost for good.
func printQuorumHint(rows []server.MemberStatus) {
	var voters, missing, up []string
	for _, r := range rows {
		if r.Role == "leader" {
			return
		}
		if r.Suffrage != "voter" {
			continue
		}
		voters = append(voters, r.Name)
		if r.State == "unreachable" {
			missing = append(missing, r.Name)
		} else {
			up = append(up, r.Name)
		}
	}
	if len(voters) == 0 {
		return
	}
	fmt.Printf("\nNO QUORUM: no master leads; %d of the %d masters are needed and %d answer (%s).\n",
		len(voters)/2+1, len(voters), len(up), strings.Join(up, ", "))
	if len(missing) > 0 {
		fmt.Printf("Missing: %s. Start them again if you can: the cluster resumes by itself.\n", strings.Join(missing, ", "))
	}
	fmt.Println("If they are lost for good: stop one surviving master, run `skiff server --cluster-reset` with its usual flags,")
	fmt.Println("start it again, and join the other masters anew with empty data dirs (docs/ha.md, \"When a majority is lost\").")
}
