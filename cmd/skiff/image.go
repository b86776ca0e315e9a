package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/runtime/image"
)

// newImageCommand is `skiff image import|ls|rm`, working on a node's image
// store (<data-dir>/agent/images) directly, with or without a running agent.
func newImageCommand() *cobra.Command {
	var dataDir string
	open := func() (*image.Store, error) {
		return image.New(image.Options{Root: filepath.Join(dataDir, "agent", "images")})
	}
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the images of this node",
		Long: `Manage the node's image store under <data-dir>/agent/images.

Archives (docker save, OCI layout tars) dropped in that directory are
imported when the agent starts; "skiff image import" imports one now.`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "/var/lib/skiff", "the node's data directory")

	imp := &cobra.Command{
		Use:   "import FILE|DIR...",
		Short: "Import images from docker archives, OCI archives or OCI layout directories",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			for _, a := range args {
				ids, err := s.Import(cmd.Context(), a)
				if err != nil {
					return err
				}
				for _, id := range ids {
					img, err := s.Get(id)
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "imported %s %s\n", shortID(id), strings.Join(img.RepoTags, " "))
				}
			}
			return nil
		},
	}
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			imgs, err := s.List()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 2, ' ', 0)
			fmt.Fprintln(w, "IMAGE\tID\tSIZE")
			for _, img := range imgs {
				names := img.RepoTags
				if len(names) == 0 {
					names = img.RepoDigests
				}
				if len(names) == 0 {
					names = []string{"<none>"}
				}
				for _, n := range names {
					fmt.Fprintf(w, "%s\t%s\t%s\n", n, shortID(img.ID), humanSize(img.Size))
				}
			}
			return w.Flush()
		},
	}
	rm := &cobra.Command{
		Use:   "rm REF...",
		Short: "Remove images (a tag, a digest reference or an ID)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			for _, a := range args {
				if err := s.Remove(a); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", a)
			}
			return nil
		},
	}
	cmd.AddCommand(imp, ls, rm)
	cmd.SetContext(context.Background())
	return cmd
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fkB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
