package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
)

// Progress is reported while an image is pulled or imported.
type Progress struct {
	// Ref is the reference being pulled or imported.
	Ref string
	// Layer is the compressed digest of the layer being fetched, empty for
	// whole-image events.
	Layer string
	// Phase: "resolving", "downloading", "unpacking", "exists", "done".
	Phase string
	// Done and Total count compressed bytes of the whole image.
	Done, Total int64
}

// ProgressFunc receives pull progress. It must not block for long.
type ProgressFunc func(Progress)

type progressKey struct{}

// WithProgress returns a context whose pulls and imports report to fn; the
// agent turns these into pod events.
func WithProgress(ctx context.Context, fn ProgressFunc) context.Context {
	return context.WithValue(ctx, progressKey{}, fn)
}

func progressFrom(ctx context.Context) ProgressFunc {
	if fn, ok := ctx.Value(progressKey{}).(ProgressFunc); ok && fn != nil {
		return fn
	}
	return func(Progress) {}
}

// storeImage writes the manifest, config and layers of img to the store and
// records it under tags and digests. It returns the image ID.
func (s *Store) storeImage(ctx context.Context, ref string, img v1.Image, tags, digests []string, local bool) (string, error) {
	report := progressFrom(ctx)
	cfgName, err := img.ConfigName()
	if err != nil {
		return "", fmt.Errorf("image config digest: %w", err)
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return "", fmt.Errorf("image config: %w", err)
	}
	if got := sha256Hex(rawCfg); got != cfgName.Hex {
		return "", fmt.Errorf("image config digest mismatch: want %s, got sha256:%s", cfgName, got)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return "", fmt.Errorf("image config: %w", err)
	}
	if cfg.OS != "" && cfg.OS != "linux" {
		return "", fmt.Errorf("image %s is for %s, not linux", ref, cfg.OS)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return "", fmt.Errorf("image manifest: %w", err)
	}
	mDigest, err := img.Digest()
	if err != nil {
		return "", err
	}
	layers, err := img.Layers()
	if err != nil {
		return "", fmt.Errorf("image layers: %w", err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return "", fmt.Errorf("image %s: %d layers but %d diff IDs", ref, len(layers), len(cfg.RootFS.DiffIDs))
	}

	var total int64
	for _, l := range layers {
		if sz, err := l.Size(); err == nil {
			total += sz
		}
	}
	p := &progressCounter{ref: ref, total: total, report: report}
	var (
		size    int64
		diffIDs []string
	)
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		diffID := cfg.RootFS.DiffIDs[i]
		digest, _ := l.Digest()
		li, err := s.ensureLayer(ctx, l, diffID, digest, p, local)
		if err != nil {
			return "", fmt.Errorf("layer %s: %w", digest, err)
		}
		size += li.Size
		diffIDs = append(diffIDs, diffID.String())
	}
	if err := writeBlob(s.blobPath(cfgName.String()), rawCfg); err != nil {
		return "", err
	}
	if err := writeBlob(s.blobPath(mDigest.String()), rawManifest); err != nil {
		return "", err
	}
	rec := &Image{
		ID:             cfgName.String(),
		RepoTags:       tags,
		RepoDigests:    digests,
		ManifestDigest: mDigest.String(),
		Layers:         diffIDs,
		Size:           size,
	}
	if err := s.addImage(rec); err != nil {
		return "", err
	}
	report(Progress{Ref: ref, Phase: "done", Done: p.done, Total: total})
	return rec.ID, nil
}

func writeBlob(path string, data []byte) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return writeFileAtomic(path, data, 0o600)
}

// ensureLayer unpacks a layer unless the store has it.
// Local layers (imports) are read uncompressed, registry layers compressed.
func (s *Store) ensureLayer(ctx context.Context, l v1.Layer, diffID, digest v1.Hash, p *progressCounter, local bool) (*layerInfo, error) {
	if li, err := s.readLayerInfo(diffID.String()); err == nil {
		if sz, err := l.Size(); err == nil {
			p.add(digest.String(), "exists", sz)
		}
		return li, nil
	}
	var (
		rc  io.ReadCloser
		err error
	)
	if local {
		rc, err = l.Uncompressed()
	} else {
		rc, err = l.Compressed()
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "layer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	fsDir := filepath.Join(tmp, "fs")
	if err := os.Mkdir(fsDir, 0o755); err != nil {
		return nil, err
	}
	counted := &countingReader{r: rc, ctx: ctx, fn: func(n int64) { p.add(digest.String(), "downloading", n) }}
	plain, err := decompress(counted)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	size, inodes, err := unpackLayer(io.TeeReader(plain, h), fsDir)
	if err != nil {
		return nil, err
	}
	// Read the tar's padding and the compressed stream's tail so that both
	// digests cover all of it.
	if _, err := io.Copy(h, plain); err != nil {
		return nil, err
	}
	if err := plain.Close(); err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return nil, err
	}
	if err := rc.Close(); err != nil {
		return nil, fmt.Errorf("layer download: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != diffID.Hex {
		return nil, fmt.Errorf("diff ID mismatch: want %s, got sha256:%s", diffID, got)
	}
	li := &layerInfo{DiffID: diffID.String(), Digest: digest.String(), Size: size, Inodes: inodes}
	b, _ := json.Marshal(li)
	if err := os.WriteFile(filepath.Join(tmp, "layer.json"), b, 0o600); err != nil {
		return nil, err
	}
	p.add(digest.String(), "unpacking", 0)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, s.layerDir(diffID.String())); err != nil {
		// Another pull unpacked the same layer first.
		if li2, err2 := s.readLayerInfo(diffID.String()); err2 == nil {
			return li2, nil
		}
		return nil, err
	}
	return li, nil
}

// decompress detects gzip and zstd streams by their magic numbers; anything
// else is taken as a plain tar.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		return gzip.NewReader(br)
	case len(magic) >= 4 && bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	default:
		return io.NopCloser(br), nil
	}
}

type countingReader struct {
	r   io.Reader
	ctx context.Context
	fn  func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	if n > 0 {
		c.fn(int64(n))
	}
	return n, err
}

// progressCounter rate-limits progress reports to a few per second.
type progressCounter struct {
	ref         string
	total, done int64
	last        time.Time
	report      ProgressFunc
}

func (p *progressCounter) add(layer, phase string, n int64) {
	p.done += n
	now := time.Now()
	if phase == "downloading" && now.Sub(p.last) < 250*time.Millisecond {
		return
	}
	p.last = now
	p.report(Progress{Ref: p.ref, Layer: layer, Phase: phase, Done: p.done, Total: p.total})
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
