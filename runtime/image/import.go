package image

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

// Import loads the images of an OCI image layout directory, an OCI archive
// (a tar of such a directory) or a docker archive (`docker save`), plain or
// gzip-compressed. It returns the IDs of the imported images.
func (s *Store) Import(ctx context.Context, p string) ([]string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return s.importLayout(ctx, p)
	}
	file, cleanup, err := s.plainTar(p)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	names, err := tarNames(file)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", p, err)
	}
	switch {
	case names["manifest.json"]:
		return s.importDockerArchive(ctx, file)
	case names["index.json"] && names["oci-layout"]:
		dir, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "oci-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if err := extractPlain(file, dir); err != nil {
			return nil, fmt.Errorf("import %s: %w", p, err)
		}
		return s.importLayout(ctx, dir)
	default:
		return nil, fmt.Errorf("import %s: neither a docker archive (manifest.json) nor an OCI archive (index.json, oci-layout)", p)
	}
}

// plainTar returns the path of an uncompressed tar with p's content: p
// itself, or a temporary decompressed copy of a gzip file.
func (s *Store) plainTar(p string) (string, func(), error) {
	f, err := os.Open(p)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic, _ := br.Peek(2)
	if len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
		return p, func() {}, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return "", nil, err
	}
	tmp, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "import-*.tar")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.Remove(tmp.Name()) }
	if _, err := io.Copy(tmp, zr); err != nil {
		tmp.Close()
		cleanup()
		return "", nil, fmt.Errorf("decompress %s: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		cleanup()
		return "", nil, err
	}
	return tmp.Name(), cleanup, nil
}

func tarNames(p string) (map[string]bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		names[strings.TrimPrefix(path.Clean(hdr.Name), "./")] = true
	}
}

// extractPlain extracts regular files and directories of a tar (an OCI
// archive) into dir.
func extractPlain(p, dir string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		rel := path.Clean("/" + hdr.Name)
		target := filepath.Join(dir, filepath.FromSlash(rel))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

func (s *Store) importDockerArchive(ctx context.Context, file string) ([]string, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(file) }
	manifest, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("docker archive: %w", err)
	}
	var ids []string
	for i, desc := range manifest {
		var (
			tag  *name.Tag
			tags []string
		)
		for _, rt := range desc.RepoTags {
			t, err := name.NewTag(rt, name.WeakValidation)
			if err != nil {
				return nil, fmt.Errorf("docker archive tag %q: %w", rt, err)
			}
			if tag == nil {
				tag = &t
			}
			tags = append(tags, formatRef(t))
		}
		if tag == nil && len(manifest) > 1 {
			return nil, fmt.Errorf("docker archive: image %d has no tag and the archive holds %d images", i, len(manifest))
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, fmt.Errorf("docker archive: %w", err)
		}
		ref := firstOr(tags, desc.Config)
		id, err := s.storeImage(ctx, ref, img, tags, nil, true)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", ref, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (s *Store) importLayout(ctx context.Context, dir string) ([]string, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	var ids []string
	for _, desc := range im.Manifests {
		var tags []string
		if n := refNameOf(desc.Annotations); n != "" {
			t, err := NormalizeRef(n)
			if err != nil {
				return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
			}
			tags = append(tags, t)
		}
		var img v1.Image
		switch {
		case desc.MediaType.IsImage():
			img, err = idx.Image(desc.Digest)
		case desc.MediaType.IsIndex():
			var child v1.ImageIndex
			child, err = idx.ImageIndex(desc.Digest)
			if err == nil {
				img, err = s.selectPlatform(child)
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
		}
		ref := firstOr(tags, desc.Digest.String())
		id, err := s.storeImage(ctx, ref, img, tags, nil, true)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", ref, err)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("OCI layout %s holds no image", dir)
	}
	return ids, nil
}

// refNameOf is the full reference an OCI index entry was saved under, if it
// has one: containerd's image name, or the OCI ref name when it is a full
// reference and not just a tag.
func refNameOf(ann map[string]string) string {
	if n := ann[annotationContainerdName]; n != "" {
		return n
	}
	n := ann[annotationRefName]
	if strings.ContainsAny(n, "/:") {
		return n
	}
	return ""
}

// selectPlatform picks the image for the store's platform from an index.
func (s *Store) selectPlatform(idx v1.ImageIndex) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Satisfies(s.platform) && d.MediaType.IsImage() {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no image for platform %s in the index", s.platform.String())
}

type importedArchive struct {
	Size    int64 `json:"size"`
	ModTime int64 `json:"modTime"`
}

// ImportArchives imports every *.tar, *.tar.gz and *.tgz file dropped in the
// store directory (air-gapped nodes), skipping archives imported before and
// unchanged since. Failures are logged and returned joined; the others still
// import.
func (s *Store) ImportArchives(ctx context.Context) error {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return err
	}
	statePath := filepath.Join(s.root, "imported.json")
	done := map[string]importedArchive{}
	if b, err := os.ReadFile(statePath); err == nil {
		if err := json.Unmarshal(b, &done); err != nil {
			s.log.Warn("ignoring unreadable imported.json", "err", err)
			done = map[string]importedArchive{}
		}
	}
	var errs []error
	changed := false
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !(strings.HasSuffix(n, ".tar") || strings.HasSuffix(n, ".tar.gz") || strings.HasSuffix(n, ".tgz")) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		mark := importedArchive{Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
		if done[n] == mark {
			continue
		}
		ids, err := s.Import(ctx, filepath.Join(s.root, n))
		if err != nil {
			s.log.Error("importing image archive failed", "file", n, "err", err)
			errs = append(errs, err)
			continue
		}
		s.log.Info("imported image archive", "file", n, "images", ids)
		done[n] = mark
		changed = true
	}
	if changed {
		b, _ := json.MarshalIndent(done, "", "  ")
		if err := writeFileAtomic(statePath, b, 0o600); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
