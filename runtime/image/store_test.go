package image

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/runtime/testutil"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: unpacking layers keeps owners and makes overlay whiteouts (device nodes)")
	}
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(Options{Root: filepath.Join(t.TempDir(), "images"), DockerConfig: filepath.Join(t.TempDir(), "none.json")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func smallImage(t *testing.T, marker string) v1.Image {
	t.Helper()
	l, err := testutil.Layer([]testutil.File{{Path: "etc", Dir: true}, {Path: "etc/marker", Data: marker}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := testutil.Image(v1.Config{Cmd: []string{"/bin/true"}, WorkingDir: "/work", User: "1000"}, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                                       "docker.io/library/busybox:latest",
		"busybox:1.36":                                  "docker.io/library/busybox:1.36",
		"docker.io/library/busybox":                     "docker.io/library/busybox:latest",
		"index.docker.io/foo/bar:v1":                    "docker.io/foo/bar:v1",
		"example.com:5000/team/app:v2":                  "example.com:5000/team/app:v2",
		"quay.io/x/y@sha256:" + strings.Repeat("a", 64): "quay.io/x/y@sha256:" + strings.Repeat("a", 64),
	} {
		got, err := NormalizeRef(in)
		if err != nil || got != want {
			t.Errorf("NormalizeRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestImportDockerArchiveAndOCILayout(t *testing.T) {
	needRoot(t)
	s := newStore(t)
	ctx := context.Background()
	dir := t.TempDir()

	archive := filepath.Join(dir, "a.tar")
	if err := testutil.WriteDockerArchive(archive, "example.com/team/a:v1", smallImage(t, "a")); err != nil {
		t.Fatal(err)
	}
	ids, err := s.Import(ctx, archive)
	if err != nil || len(ids) != 1 {
		t.Fatalf("import docker archive: %v %v", ids, err)
	}
	layoutDir := filepath.Join(dir, "layout")
	if err := testutil.WriteOCILayout(layoutDir, "example.com/team/b:v2", smallImage(t, "b")); err != nil {
		t.Fatal(err)
	}
	ids2, err := s.Import(ctx, layoutDir)
	if err != nil || len(ids2) != 1 {
		t.Fatalf("import OCI layout: %v %v", ids2, err)
	}

	imgs, err := s.ListImages(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].RepoTags[0] != "example.com/team/a:v1" || imgs[1].RepoTags[0] != "example.com/team/b:v2" {
		t.Fatalf("images: %v", imgs)
	}
	if imgs[0].Uid.GetValue() != 1000 {
		t.Errorf("uid from image user: %v", imgs[0].Uid)
	}
	cfg, rec, err := s.Config("example.com/team/a:v1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.WorkingDir != "/work" || cfg.Config.Cmd[0] != "/bin/true" {
		t.Errorf("config: %+v", cfg.Config)
	}
	b, err := os.ReadFile(filepath.Join(s.LayerPath(rec.Layers[0]), "etc", "marker"))
	if err != nil || string(b) != "a" {
		t.Errorf("unpacked layer: %q %v", b, err)
	}
	// Lookups by ID, ID prefix and short ID.
	for _, ref := range []string{rec.ID, strings.TrimPrefix(rec.ID, "sha256:")[:12], rec.ID[:20]} {
		st, err := s.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false)
		if err != nil || st.Image == nil || st.Image.Id != rec.ID {
			t.Errorf("ImageStatus(%s) = %v, %v", ref, st, err)
		}
	}
	st, err := s.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: "nope:1"}, false)
	if err != nil || st.Image != nil {
		t.Errorf("ImageStatus of a missing image = %v, %v; want empty", st, err)
	}

	// Importing again is idempotent.
	if _, err := s.Import(ctx, archive); err != nil {
		t.Fatal(err)
	}
	if imgs, _ := s.List(); len(imgs) != 2 {
		t.Errorf("re-import made %d images", len(imgs))
	}
}

func TestImportArchivesAtStart(t *testing.T) {
	needRoot(t)
	s := newStore(t)
	if err := testutil.WriteDockerArchive(filepath.Join(s.Root(), "dropped.tar"), "example.com/dropped:v1", smallImage(t, "d")); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportArchives(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("example.com/dropped:v1"); err != nil {
		t.Fatal(err)
	}
	// Remove it: an unchanged archive is not imported again.
	if err := s.Remove("example.com/dropped:v1"); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportArchives(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("example.com/dropped:v1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("archive imported twice: %v", err)
	}
}

func TestWhiteoutsAndOverlay(t *testing.T) {
	needRoot(t)
	s := newStore(t)
	l1, err := testutil.Layer([]testutil.File{
		{Path: "a", Dir: true}, {Path: "a/gone", Data: "1"}, {Path: "a/keep", Data: "2"},
		{Path: "b", Dir: true}, {Path: "b/hidden", Data: "3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := testutil.Layer([]testutil.File{
		{Path: "a/.wh.gone", Data: ""},
		{Path: "b", Dir: true}, {Path: "b/.wh..wh..opq", Data: ""}, {Path: "b/new", Data: "4"},
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := testutil.Image(v1.Config{}, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "w.tar")
	if err := testutil.WriteDockerArchive(archive, "example.com/w:1", img); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(context.Background(), archive); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Get("example.com/w:1")
	if err != nil {
		t.Fatal(err)
	}
	top := s.LayerPath(rec.Layers[1])
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(top, "a", "gone"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout is not a 0/0 character device: mode %o rdev %d", st.Mode, st.Rdev)
	}
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(filepath.Join(top, "b"), opaqueXattr, buf)
	if err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque xattr: %q %v", buf[:n], err)
	}

	dir := filepath.Join(t.TempDir(), "c1")
	rootfs, err := s.MountRootfs("example.com/w:1", "c1", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.UnmountRootfs("c1", dir) })
	for p, want := range map[string]bool{"a/gone": false, "a/keep": true, "b/hidden": false, "b/new": true} {
		_, err := os.Lstat(filepath.Join(rootfs.Path, p))
		if (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", p, err == nil, want)
		}
	}
	// Writes go to the container's upper dir, not to the shared layer.
	if err := os.WriteFile(filepath.Join(rootfs.Path, "a", "keep"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(s.LayerPath(rec.Layers[0]), "a", "keep")); string(b) != "2" {
		t.Errorf("shared layer changed: %q", b)
	}
	// The image is leased while the rootfs exists.
	if err := s.Remove("example.com/w:1"); !errors.Is(err, ErrInUse) {
		t.Errorf("removing a leased image: %v, want ErrInUse", err)
	}
	if err := s.UnmountRootfs("c1", dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("container dir left: %v", err)
	}
	if err := s.Remove("example.com/w:1"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Root(), "layers", "sha256")); len(entries) != 0 {
		t.Errorf("layers left after removal: %d", len(entries))
	}
}

// registryServer is an in-memory registry on loopback that requires basic
// auth user:pass when auth is true.
func registryServer(t *testing.T, auth bool) (host string) {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if auth {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != "user" || p != "pass" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			inner.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushIndex pushes a manifest list with an amd64 and an arm64 image.
func pushIndex(t *testing.T, ref string, opts ...remote.Option) (amd64 v1.Image) {
	t.Helper()
	amd := smallImage(t, "amd64")
	arm := smallImage(t, "arm64")
	cf, _ := arm.ConfigFile()
	cf = cf.DeepCopy()
	cf.Architecture = "arm64"
	arm, err := mutate.ConfigFile(arm, cf)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, opts...); err != nil {
		t.Fatal(err)
	}
	return amd
}

func TestPullManifestListWithDockerConfigAuth(t *testing.T) {
	needRoot(t)
	host := registryServer(t, true)
	basic := remote.WithAuth(&authn.Basic{Username: "user", Password: "pass"})
	amd := pushIndex(t, host+"/team/app:v1", basic)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	enc := base64.StdEncoding.EncodeToString([]byte("user:pass"))
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`{"auths":{"http://%s":{"auth":%q}}}`, host, enc)), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Root: filepath.Join(dir, "images"), DockerConfig: cfgPath, Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		phases []string
	)
	ctx := WithProgress(context.Background(), func(p Progress) {
		mu.Lock()
		phases = append(phases, p.Phase)
		mu.Unlock()
	})
	id, err := s.PullImage(ctx, &runtimeapi.ImageSpec{Image: host + "/team/app:v1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := amd.ConfigName()
	if id != want.String() {
		t.Errorf("pulled %s, want the amd64 image %s", id, want)
	}
	rec, _ := s.Get(host + "/team/app:v1")
	if len(rec.RepoDigests) != 1 || !strings.HasPrefix(rec.RepoDigests[0], host+"/team/app@sha256:") {
		t.Errorf("repo digests: %v", rec.RepoDigests)
	}
	// The repo digest (of the manifest list) names the image too.
	if _, err := s.Get(rec.RepoDigests[0]); err != nil {
		t.Error(err)
	}
	mu.Lock()
	joined := strings.Join(phases, ",")
	mu.Unlock()
	if !strings.HasPrefix(joined, "resolving") || !strings.HasSuffix(joined, "done") {
		t.Errorf("progress phases: %s", joined)
	}

	// Without credentials the pull fails.
	s2 := newStore(t)
	if _, err := s2.PullImage(context.Background(), &runtimeapi.ImageSpec{Image: host + "/team/app:v1"}, nil, nil); err == nil {
		t.Error("pull without credentials succeeded")
	}
	// With CRI credentials (an image pull secret) it works.
	if _, err := s2.PullImage(context.Background(), &runtimeapi.ImageSpec{Image: host + "/team/app:v1"}, &runtimeapi.AuthConfig{Username: "user", Password: "pass"}, nil); err != nil {
		t.Error(err)
	}
}

func TestPullThroughMirrorFromRegistriesYAML(t *testing.T) {
	needRoot(t)
	mirror := registryServer(t, true)
	pushIndex(t, mirror+"/library/app:v3", remote.WithAuth(&authn.Basic{Username: "user", Password: "pass"}))
	dir := t.TempDir()
	regs := fmt.Sprintf("mirrors:\n  docker.io:\n    endpoint:\n      - http://%s\n    disable_default_endpoint: true\nconfigs:\n  %q:\n    auth:\n      username: user\n      password: pass\n", mirror, mirror)
	if err := os.WriteFile(filepath.Join(dir, "registries.yaml"), []byte(regs), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Root: filepath.Join(dir, "images"), DockerConfig: filepath.Join(dir, "none.json")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PullImage(context.Background(), &runtimeapi.ImageSpec{Image: "app:v3"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("docker.io/library/app:v3"); err != nil {
		t.Fatal(err)
	}
}

func TestGarbageCollectUnderDiskPressure(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	// A pretend disk whose used bytes are the store's layers plus a fixed base.
	var s *Store
	const capacity = 1000
	base := uint64(0)
	usage := func(string) (uint64, uint64, error) {
		b, _, err := s.DiskUsage()
		return capacity, base + uint64(b), err
	}
	s, err := New(Options{Root: filepath.Join(dir, "images"), DockerConfig: filepath.Join(dir, "none.json"), DiskUsage: usage})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 4 {
		l, err := testutil.Layer([]testutil.File{{Path: "data", Data: strings.Repeat(fmt.Sprint(i), 100)}})
		if err != nil {
			t.Fatal(err)
		}
		img, _ := testutil.Image(v1.Config{}, l)
		archive := filepath.Join(dir, fmt.Sprintf("%d.tar", i))
		if err := testutil.WriteDockerArchive(archive, fmt.Sprintf("example.com/gc:%d", i), img); err != nil {
			t.Fatal(err)
		}
		got, err := s.Import(context.Background(), archive)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got[0])
	}
	// Image 0 is used by a container, image 1 was used most recently.
	cdir := filepath.Join(dir, "c")
	if _, err := s.MountRootfs("example.com/gc:0", "c0", cdir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.UnmountRootfs("c0", cdir) })
	if _, err := s.MountRootfs("example.com/gc:1", "c1", filepath.Join(dir, "c1")); err != nil {
		t.Fatal(err)
	}
	if err := s.UnmountRootfs("c1", filepath.Join(dir, "c1")); err != nil {
		t.Fatal(err)
	}

	// 400 bytes of layers + 400 = 80%: under the high threshold, nothing goes.
	base = 400
	removed, err := s.GarbageCollect(context.Background(), GCPolicy{HighThresholdPercent: 85, LowThresholdPercent: 70})
	if err != nil || len(removed) != 0 {
		t.Fatalf("GC below threshold removed %v, %v", removed, err)
	}
	// 400 + 500 = 90%: unused images go, least recently used first, until <= 70%.
	base = 500
	removed, err = s.GarbageCollect(context.Background(), GCPolicy{HighThresholdPercent: 85, LowThresholdPercent: 70})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || removed[0] != ids[2] || removed[1] != ids[3] {
		t.Fatalf("GC removed %v, want images 2 and 3 (%v)", removed, ids[2:])
	}
	if _, err := s.Get(ids[0]); err != nil {
		t.Error("GC removed the image in use")
	}
}
