// Package testutil builds test images for the node runtime's tests: a static
// busybox (Debian's busybox-static) in a one-layer image, written as a docker
// archive or an OCI layout, with no registry involved.
package testutil

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BusyboxPath is where Debian's busybox-static installs busybox.
const BusyboxPath = "/bin/busybox"

// Busybox returns the path of a static busybox, or skips the test with a
// message saying how to get one.
func Busybox(t testing.TB) string {
	t.Helper()
	if err := checkStatic(BusyboxPath); err != nil {
		t.Skipf("needs a static busybox at %s (apt-get install busybox-static): %v", BusyboxPath, err)
	}
	return BusyboxPath
}

func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", p)
		}
	}
	return nil
}

// File is an extra file of a test layer.
type File struct {
	Path string
	Mode int64
	Data string
	// Link makes the entry a symbolic link to Link.
	Link string
	// Dir makes the entry a directory.
	Dir bool
}

// Layer builds an uncompressed layer tar holding files.
func Layer(files []File) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	for _, f := range files {
		hdr := &tar.Header{Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case f.Dir:
			hdr.Typeflag = tar.TypeDir
			if hdr.Mode == 0 {
				hdr.Mode = 0o755
			}
		case f.Link != "":
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = f.Link
			hdr.Mode = 0o777
		default:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.Data))
			if hdr.Mode == 0 {
				hdr.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// BusyboxFiles are the files of a minimal busybox root filesystem: the
// binary, a link per applet in /bin, /etc/passwd (root, app 1000, nobody)
// and /etc/group, and the usual empty directories.
func BusyboxFiles(busybox string) ([]File, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	files := []File{
		{Path: "bin", Dir: true}, {Path: "etc", Dir: true}, {Path: "tmp", Dir: true, Mode: 0o1777},
		{Path: "proc", Dir: true}, {Path: "sys", Dir: true}, {Path: "dev", Dir: true},
		{Path: "root", Dir: true, Mode: 0o700}, {Path: "home", Dir: true}, {Path: "home/app", Dir: true},
		{Path: "bin/busybox", Mode: 0o755, Data: string(bin)},
		{Path: "etc/passwd", Data: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		{Path: "etc/group", Data: "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n"},
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		files = append(files, File{Path: "bin/" + applet, Link: "busybox"})
	}
	return files, nil
}

// Image builds a linux/amd64 image from layers with the given config.
func Image(cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = "amd64"
	cf.Created = v1.Time{Time: time.Unix(1700000000, 0).UTC()}
	if len(cfg.Env) == 0 {
		cfg.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// BusyboxImage is a one-layer busybox image whose default command is cmd.
func BusyboxImage(busybox string, cfg v1.Config, extra ...File) (v1.Image, error) {
	files, err := BusyboxFiles(busybox)
	if err != nil {
		return nil, err
	}
	l, err := Layer(append(files, extra...))
	if err != nil {
		return nil, err
	}
	return Image(cfg, l)
}

// WriteDockerArchive writes img as a `docker save` archive tagged ref.
func WriteDockerArchive(path, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, tag, img)
}

// WriteOCILayout writes img into an OCI image layout directory, annotated
// with ref as its name.
func WriteOCILayout(dir, ref string, img v1.Image) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
}
