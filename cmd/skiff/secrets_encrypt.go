package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/client"
	"github.com/skiff-io/skiff/server"
)

func newSecretsEncryptCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "secrets-encrypt",
		Short: "Show and rotate the keys that encrypt Secrets at rest",
		Long: `Secrets (and the resources given to skiff server --encryption-resources)
are sealed with AES-256-GCM before they enter the Raft log or a snapshot.
The data keys live in the cluster state, wrapped with each master's root
key (<data-dir>/tls/encryption.key). See docs/security.md.`,
	}
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", "", "admin kubeconfig (default $KUBECONFIG, then "+client.DefaultKubeconfig+")")
	status := &cobra.Command{
		Use:   "status",
		Short: "Show whether encryption is on, the data keys, and the key of the master's latest snapshot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var st server.EncryptionStatus
			if err := adminRequest(kubeconfig, "GET", "/internal/v1/secrets-encrypt", 30*time.Second, "status", &st); err != nil {
				return err
			}
			state := "Disabled"
			if len(st.Resources) > 0 {
				state = "Enabled"
			}
			fmt.Printf("Encryption status: %s\n", state)
			fmt.Printf("Encrypted resources: %s (%d objects)\n", strings.Join(st.Resources, ", "), st.Objects)
			snap := "none yet"
			if st.SnapshotIndex > 0 {
				key := st.SnapshotKey
				if key == "" {
					key = "not sealed"
				}
				snap = fmt.Sprintf("index %d, %s", st.SnapshotIndex, key)
			}
			fmt.Printf("Latest snapshot of master %s: %s\n\n", st.Master, snap)
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "KEY\tCREATED\tUSE")
			for _, k := range st.Keys {
				use := "decrypt"
				if k.Primary {
					use = "encrypt, decrypt"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", k.Name, k.Created.Format(time.RFC3339), use)
			}
			return tw.Flush()
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new data key the primary one; every master then writes a snapshot sealed with it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var res map[string]string
			if err := adminRequest(kubeconfig, "POST", "/internal/v1/secrets-encrypt/rotate", time.Minute, "rotation result", &res); err != nil {
				return err
			}
			fmt.Printf("new primary key %s: new writes are sealed with it; each master re-seals its snapshot within seconds (skiff secrets-encrypt status)\n", res["key"])
			return nil
		},
	}
	cmd.AddCommand(status, rotate)
	return cmd
}
