package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/client"
	"github.com/skiff-io/skiff/server"
)

// newSnapshotCommand is `skiff cluster snapshot`.
func newSnapshotCommand(kubeconfig *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, list and delete cluster snapshots (copied to every master); restore with skiff server --cluster-reset --cluster-reset-restore FILE",
	}
	master := func() (*client.Master, error) { return client.NewMaster(client.KubeconfigPath(*kubeconfig)) }
	save := &cobra.Command{
		Use:   "save [FILE]",
		Short: "Take a snapshot now (a linearizable point in time); it is kept on every master, and written to FILE too if given",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := master()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			body, err := m.Do(ctx, "POST", "/internal/v1/snapshots")
			if err != nil {
				return err
			}
			var info server.SnapshotInfo
			if err := json.Unmarshal(body, &info); err != nil {
				return fmt.Errorf("decode snapshot: %w", err)
			}
			fmt.Printf("snapshot %s: index %d, %d objects, %d bytes, on %s\n", info.Name, info.Index, info.Objects, info.Size, strings.Join(append(info.Masters, info.Copies...), ", "))
			if len(args) == 1 {
				if err := downloadSnapshot(ctx, m, info.Name, args[0]); err != nil {
					return fmt.Errorf("download %s: %w", info.Name, err)
				}
				abs, _ := filepath.Abs(args[0])
				fmt.Printf("written to %s (it opens with the server token only)\n", abs)
			}
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the snapshots of every master",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := master()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			body, err := m.Do(ctx, "GET", "/internal/v1/snapshots")
			if err != nil {
				return err
			}
			var rows []server.SnapshotInfo
			if err := json.Unmarshal(body, &rows); err != nil {
				return fmt.Errorf("decode snapshots: %w", err)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tINDEX\tCREATED\tOBJECTS\tSIZE\tMASTERS\tCOPIES")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\n", r.Name, r.Index, r.Created.Format(time.RFC3339), r.Objects, r.Size,
					dash(strings.Join(r.Masters, ",")), dash(strings.Join(r.Copies, ",")))
			}
			return tw.Flush()
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a snapshot on every master",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := master()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := m.Do(ctx, "DELETE", "/internal/v1/snapshots/files/"+url.PathEscape(args[0])); err != nil {
				return err
			}
			fmt.Printf("snapshot %s deleted\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(save, list, del)
	return cmd
}

// downloadSnapshot streams a snapshot file to path (through path.tmp).
func downloadSnapshot(ctx context.Context, m *client.Master, name, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.Host+"/internal/v1/snapshots/files/"+url.PathEscape(name), nil)
	if err != nil {
		return err
	}
	resp, err := m.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
