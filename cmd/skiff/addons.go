package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/server/addons"
)

// newAddonsCommand is `skiff cluster addons`: the leader's view of the
// manifests in the masters' <data-dir>/manifests/ (docs/addons.md).
func newAddonsCommand(kubeconfig *string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "addons",
		Short: "List the manifests of the masters' <data-dir>/manifests/ and whether the leader applied them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var rows []addons.Status
			if err := adminRequest(*kubeconfig, "GET", "/internal/v1/addons", 30*time.Second, "addons", &rows); err != nil {
				return err
			}
			sort.Slice(rows, func(i, j int) bool { return rows[i].Addon < rows[j].Addon })
			switch output {
			case "json":
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			case "":
			default:
				return fmt.Errorf("unknown output format %q (want json)", output)
			}
			if len(rows) == 0 {
				fmt.Println("No manifests in any master's <data-dir>/manifests/.")
				return nil
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "FILE\tMASTER\tMODE\tOBJECTS\tSTATUS\tLAST APPLIED\tMESSAGE")
			for _, r := range rows {
				last := "-"
				if !r.LastApplied.IsZero() {
					last = time.Since(r.LastApplied).Round(time.Second).String() + " ago"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.File, strings.Join(r.Masters, ","), dash(r.Mode),
					r.Objects, r.State, last, dash(r.Message))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: a table)")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
