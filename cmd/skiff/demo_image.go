package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	goruntime "runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/spf13/cobra"
)

// newDemoImageCommand is the hidden `skiff demo-image`: it packs a static
// binary into a one-layer image and writes it as a docker archive, which
// `make run` drops into the node's image directory (imported at start), so
// the demo needs no registry.
func newDemoImageCommand() *cobra.Command {
	var binary, ref, out string
	cmd := &cobra.Command{
		Use:    "demo-image",
		Short:  "Pack a static binary into an image archive (used by make run)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeDemoImage(binary, ref, out)
		},
	}
	cmd.Flags().StringVar(&binary, "binary", "", "static binary to run as the image's entrypoint")
	cmd.Flags().StringVar(&ref, "ref", "skiff.local/demo:1", "image reference")
	cmd.Flags().StringVar(&out, "out", "", "docker archive to write")
	_ = cmd.MarkFlagRequired("binary")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func writeDemoImage(binary, ref, out string) error {
	data, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	entry := "/" + path.Base(binary)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	for _, d := range []string{"tmp/", "etc/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: mtime}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: entry[1:], Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data)), ModTime: mtime}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		return err
	}
	base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: goruntime.GOARCH, OS: "linux", Created: v1.Time{Time: mtime},
		Config: v1.Config{Entrypoint: []string{entry}, Env: []string{"PATH=/"}, ExposedPorts: map[string]struct{}{"8080/tcp": {}}},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	fmt.Printf("wrote %s (%s)\n", out, ref)
	return nil
}
