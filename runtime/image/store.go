// Package image is the node's image store: a content-addressed store of
// manifests, configs and unpacked layers under <data-dir>/agent/images,
// pulls from OCI and Docker registries (go-containerregistry), imports of OCI
// layouts and docker archives, and overlay root filesystems for containers.
//
// Layout of the store (Root):
//
//	index.json                 image records: ID, tags, digests, layers
//	blobs/sha256/<hex>         manifests and image configs by digest
//	layers/sha256/<hex>/fs     a layer unpacked once, by its diff ID
//	layers/sha256/<hex>/layer.json  its size and compressed digest
//	leases/<container-id>      the image ID a container's rootfs uses
//	imported.json              archives of Root already imported
//	*.tar, *.tar.gz            archives to import at start (air-gap)
//	lock                       flock(2) held while the index changes
//
// Several processes (the agent and `skiff image` commands) may use one store:
// every change of the index happens under the lock file.
package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// ErrNotFound is returned when no image matches a reference.
var ErrNotFound = errors.New("image not found")

// ErrInUse is returned when removing an image that a container's rootfs uses.
var ErrInUse = errors.New("image is in use by a container")

// Options configure a Store. Only Root is required.
type Options struct {
	// Root is the store directory, <data-dir>/agent/images.
	Root string
	// RegistriesFile is the k3s-style registries.yaml (mirrors, auth, TLS);
	// a missing file means no mirrors and no extra settings.
	// Default: <Root>/../registries.yaml.
	RegistriesFile string
	// DockerConfig is a docker config.json whose "auths" are used for pulls.
	// Default: $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json.
	DockerConfig string
	// Platform selected from manifest lists. Default linux/<GOARCH>.
	Platform *v1.Platform
	// DiskUsage reports the capacity and used bytes of the filesystem holding
	// Root, for garbage collection. Default: statfs(2).
	DiskUsage func(path string) (capacity, used uint64, err error)
	// Logger, default slog.Default().
	Logger *slog.Logger
}

// Store is the image store. It implements runtime.ImageService.
type Store struct {
	root     string
	opts     Options
	platform v1.Platform
	log      *slog.Logger

	// pulls deduplicates concurrent pulls of one reference.
	mu    sync.Mutex
	pulls map[string]*pullCall
}

// Image is an image record of the index.
type Image struct {
	// ID is the digest of the image config ("sha256:...").
	ID             string   `json:"id"`
	RepoTags       []string `json:"repoTags,omitempty"`
	RepoDigests    []string `json:"repoDigests,omitempty"`
	ManifestDigest string   `json:"manifestDigest"`
	// Layers are diff IDs, bottom first.
	Layers   []string  `json:"layers"`
	Size     int64     `json:"size"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"lastUsed"`
	Pinned   bool      `json:"pinned,omitempty"`
}

type index struct {
	Images map[string]*Image `json:"images"`
}

type layerInfo struct {
	DiffID string `json:"diffID"`
	Digest string `json:"digest,omitempty"`
	// Size is the number of bytes of the unpacked layer.
	Size   int64 `json:"size"`
	Inodes int64 `json:"inodes"`
}

// New opens (creating if needed) the image store at opts.Root.
func New(opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, errors.New("image store: root not set")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{root, filepath.Join(root, "blobs", "sha256"), filepath.Join(root, "layers", "sha256"), filepath.Join(root, "leases"), filepath.Join(root, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	if opts.RegistriesFile == "" {
		opts.RegistriesFile = filepath.Join(filepath.Dir(root), "registries.yaml")
	}
	if opts.DockerConfig == "" {
		opts.DockerConfig = defaultDockerConfig()
	}
	if opts.DiskUsage == nil {
		opts.DiskUsage = statfsUsage
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{
		root:     root,
		opts:     opts,
		platform: defaultPlatform(),
		log:      opts.Logger.With("component", "images"),
		pulls:    map[string]*pullCall{},
	}
	if opts.Platform != nil {
		s.platform = *opts.Platform
	}
	// Leftovers of interrupted unpacks.
	if err := os.RemoveAll(filepath.Join(root, "tmp")); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return s, nil
}

// Root is the store directory.
func (s *Store) Root() string { return s.root }

// withLock runs fn with the store's file lock held and the index loaded; if
// fn returns write=true the index is saved.
func (s *Store) withLock(fn func(ix *index) (write bool, err error)) error {
	f, err := os.OpenFile(filepath.Join(s.root, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("image store lock: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("image store lock: %w", err)
	}
	ix, err := s.loadIndex()
	if err != nil {
		return err
	}
	write, err := fn(ix)
	if err != nil {
		return err
	}
	if write {
		return s.saveIndex(ix)
	}
	return nil
}

// read runs fn on a consistent snapshot of the index.
func (s *Store) read(fn func(ix *index) error) error {
	return s.withLock(func(ix *index) (bool, error) { return false, fn(ix) })
}

func (s *Store) loadIndex() (*index, error) {
	ix := &index{Images: map[string]*Image{}}
	b, err := os.ReadFile(filepath.Join(s.root, "index.json"))
	if errors.Is(err, os.ErrNotExist) {
		return ix, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image index: %w", err)
	}
	if err := json.Unmarshal(b, ix); err != nil {
		return nil, fmt.Errorf("image index: %w", err)
	}
	if ix.Images == nil {
		ix.Images = map[string]*Image{}
	}
	return ix, nil
}

func (s *Store) saveIndex(ix *index) error {
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.root, "index.json"), b, 0o600)
}

// writeFileAtomic writes through a temporary file, fsyncs and renames.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// lookup finds the image a reference names: an ID or unique ID prefix, a
// tag, or a repo digest.
func (ix *index) lookup(ref string) (*Image, error) {
	if ref == "" {
		return nil, fmt.Errorf("empty image reference: %w", ErrNotFound)
	}
	if img, ok := ix.Images[ref]; ok {
		return img, nil
	}
	if img, ok := ix.Images["sha256:"+ref]; ok {
		return img, nil
	}
	if looksLikeID(ref) {
		prefix := "sha256:" + strings.TrimPrefix(ref, "sha256:")
		var found *Image
		for id, img := range ix.Images {
			if strings.HasPrefix(id, prefix) {
				if found != nil {
					return nil, fmt.Errorf("image ID prefix %q is ambiguous", ref)
				}
				found = img
			}
		}
		if found != nil {
			return found, nil
		}
	}
	if strings.HasPrefix(ref, "sha256:") {
		return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	norm, err := NormalizeRef(ref)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	for _, img := range ix.Images {
		if slices.Contains(img.RepoTags, norm) || slices.Contains(img.RepoDigests, norm) {
			return img, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
}

// Get returns a copy of the image record a reference names.
func (s *Store) Get(ref string) (*Image, error) {
	var out *Image
	err := s.read(func(ix *index) error {
		img, err := ix.lookup(ref)
		if err != nil {
			return err
		}
		out = img.clone()
		return nil
	})
	return out, err
}

// List returns all image records, sorted by first tag then ID.
func (s *Store) List() ([]*Image, error) {
	var out []*Image
	err := s.read(func(ix *index) error {
		for _, img := range ix.Images {
			out = append(out, img.clone())
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		a, b := firstOr(out[i].RepoTags, out[i].ID), firstOr(out[j].RepoTags, out[j].ID)
		if a != b {
			return a < b
		}
		return out[i].ID < out[j].ID
	})
	return out, err
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

func (img *Image) clone() *Image {
	c := *img
	c.RepoTags = slices.Clone(img.RepoTags)
	c.RepoDigests = slices.Clone(img.RepoDigests)
	c.Layers = slices.Clone(img.Layers)
	return &c
}

// Config returns the image config (Entrypoint, Cmd, Env, WorkingDir, User,
// ...) of the image a reference names, and its record.
func (s *Store) Config(ref string) (*v1.ConfigFile, *Image, error) {
	img, err := s.Get(ref)
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(s.blobPath(img.ID))
	if err != nil {
		return nil, nil, fmt.Errorf("image %s config: %w", img.ID, err)
	}
	cfg, err := v1.ParseConfigFile(strings.NewReader(string(b)))
	if err != nil {
		return nil, nil, fmt.Errorf("image %s config: %w", img.ID, err)
	}
	return cfg, img, nil
}

// Remove deletes a reference. A tag or repo digest is removed from its
// image; the image itself (with its now unused layers) goes when no tag is
// left or when ref is its ID. Removing an image a container uses fails with
// ErrInUse.
func (s *Store) Remove(ref string) error {
	return s.withLock(func(ix *index) (bool, error) {
		img, err := ix.lookup(ref)
		if err != nil {
			return false, err
		}
		norm, _ := NormalizeRef(ref)
		byName := norm != "" && (slices.Contains(img.RepoTags, norm) || slices.Contains(img.RepoDigests, norm))
		if byName && len(img.RepoTags) > 1 && slices.Contains(img.RepoTags, norm) {
			// Other tags are left: only untag.
			img.RepoTags = slices.DeleteFunc(img.RepoTags, func(t string) bool { return t == norm })
			return true, nil
		}
		leased, err := s.leasedImages()
		if err != nil {
			return false, err
		}
		if leased[img.ID] {
			return false, fmt.Errorf("remove %s: %w", ref, ErrInUse)
		}
		delete(ix.Images, img.ID)
		if err := s.saveIndex(ix); err != nil {
			return false, err
		}
		return false, s.pruneLocked(ix)
	})
}

// pruneLocked removes blobs and layers no image references. The lock is held.
func (s *Store) pruneLocked(ix *index) error {
	keepLayers := map[string]bool{}
	keepBlobs := map[string]bool{}
	for _, img := range ix.Images {
		for _, l := range img.Layers {
			keepLayers[hexOf(l)] = true
		}
		keepBlobs[hexOf(img.ID)] = true
		keepBlobs[hexOf(img.ManifestDigest)] = true
	}
	var errs []error
	layersDir := filepath.Join(s.root, "layers", "sha256")
	entries, err := os.ReadDir(layersDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !keepLayers[e.Name()] {
			if err := os.RemoveAll(filepath.Join(layersDir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	blobsDir := filepath.Join(s.root, "blobs", "sha256")
	entries, err = os.ReadDir(blobsDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !keepBlobs[e.Name()] {
			if err := os.Remove(filepath.Join(blobsDir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func hexOf(digest string) string {
	_, h, ok := strings.Cut(digest, ":")
	if !ok {
		return digest
	}
	return h
}

func (s *Store) blobPath(digest string) string {
	return filepath.Join(s.root, "blobs", "sha256", hexOf(digest))
}

func (s *Store) layerDir(diffID string) string {
	return filepath.Join(s.root, "layers", "sha256", hexOf(diffID))
}

// LayerPath is the unpacked directory of a layer (by diff ID).
func (s *Store) LayerPath(diffID string) string {
	return filepath.Join(s.layerDir(diffID), "fs")
}

func (s *Store) readLayerInfo(diffID string) (*layerInfo, error) {
	b, err := os.ReadFile(filepath.Join(s.layerDir(diffID), "layer.json"))
	if err != nil {
		return nil, err
	}
	var li layerInfo
	if err := json.Unmarshal(b, &li); err != nil {
		return nil, err
	}
	return &li, nil
}

// addImage records an image whose blobs and layers are in the store, merging
// tags and digests into an existing record of the same ID. A tag moves from
// any other image to this one.
func (s *Store) addImage(img *Image) error {
	return s.withLock(func(ix *index) (bool, error) {
		for _, l := range img.Layers {
			if _, err := os.Stat(filepath.Join(s.layerDir(l), "layer.json")); err != nil {
				return false, fmt.Errorf("layer %s vanished while storing image %s (removed concurrently?): %w", l, img.ID, err)
			}
		}
		for _, other := range ix.Images {
			if other.ID == img.ID {
				continue
			}
			other.RepoTags = slices.DeleteFunc(other.RepoTags, func(t string) bool { return slices.Contains(img.RepoTags, t) })
		}
		now := time.Now().UTC()
		if cur, ok := ix.Images[img.ID]; ok {
			for _, t := range img.RepoTags {
				if !slices.Contains(cur.RepoTags, t) {
					cur.RepoTags = append(cur.RepoTags, t)
				}
			}
			for _, d := range img.RepoDigests {
				if !slices.Contains(cur.RepoDigests, d) {
					cur.RepoDigests = append(cur.RepoDigests, d)
				}
			}
			cur.LastUsed = now
			return true, nil
		}
		c := img.clone()
		c.Created, c.LastUsed = now, now
		ix.Images[c.ID] = c
		return true, nil
	})
}

func defaultDockerConfig() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".docker", "config.json")
	}
	return ""
}

func statfsUsage(path string) (capacity, used uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	capacity = st.Blocks * uint64(st.Bsize)
	used = (st.Blocks - st.Bfree) * uint64(st.Bsize)
	return capacity, used, nil
}
