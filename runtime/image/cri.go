package image

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/runtime"
)

var _ runtime.ImageService = (*Store)(nil)

// ListImages lists the images, all of them or those a filter's image
// reference names.
func (s *Store) ListImages(ctx context.Context, filter *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	if ref := filter.GetImage().GetImage(); ref != "" {
		img, err := s.Get(ref)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []*runtimeapi.Image{s.criImage(img)}, nil
	}
	imgs, err := s.List()
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, s.criImage(img))
	}
	return out, nil
}

// ImageStatus returns the image a reference names; an unknown image is a
// response with a nil Image, as the CRI asks.
func (s *Store) ImageStatus(ctx context.Context, spec *runtimeapi.ImageSpec, verbose bool) (*runtimeapi.ImageStatusResponse, error) {
	img, err := s.Get(spec.GetImage())
	if errors.Is(err, ErrNotFound) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: s.criImage(img)}
	if verbose {
		resp.Info = map[string]string{"manifestDigest": img.ManifestDigest, "layers": strings.Join(img.Layers, ",")}
	}
	return resp, nil
}

// PullImage pulls an image and returns its ID. Progress goes to the
// function set on ctx with WithProgress.
func (s *Store) PullImage(ctx context.Context, spec *runtimeapi.ImageSpec, auth *runtimeapi.AuthConfig, _ *runtimeapi.PodSandboxConfig) (string, error) {
	var cred *authn.AuthConfig
	if auth != nil && (auth.Username != "" || auth.Password != "" || auth.Auth != "" || auth.IdentityToken != "" || auth.RegistryToken != "") {
		cred = &authn.AuthConfig{
			Username:      auth.Username,
			Password:      auth.Password,
			Auth:          auth.Auth,
			IdentityToken: auth.IdentityToken,
			RegistryToken: auth.RegistryToken,
		}
	}
	return s.Pull(ctx, spec.GetImage(), cred)
}

// RemoveImage removes an image; removing one that does not exist succeeds.
func (s *Store) RemoveImage(ctx context.Context, spec *runtimeapi.ImageSpec) error {
	err := s.Remove(spec.GetImage())
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// ImageFsInfo reports the bytes and inodes the unpacked layers use.
func (s *Store) ImageFsInfo(ctx context.Context) (*runtimeapi.ImageFsInfoResponse, error) {
	used, inodes, err := s.DiskUsage()
	if err != nil {
		return nil, err
	}
	fs := &runtimeapi.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: s.root},
		UsedBytes:  &runtimeapi.UInt64Value{Value: uint64(used)},
		InodesUsed: &runtimeapi.UInt64Value{Value: uint64(inodes)},
	}
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{fs}}, nil
}

func (s *Store) criImage(img *Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        uint64(img.Size),
		Spec:        &runtimeapi.ImageSpec{Image: img.ID},
		Pinned:      img.Pinned,
	}
	if cfg, _, err := s.Config(img.ID); err == nil {
		user := cfg.Config.User
		if u, _, _ := strings.Cut(user, ":"); u != "" {
			if n, err := strconv.ParseInt(u, 10, 64); err == nil {
				out.Uid = &runtimeapi.Int64Value{Value: n}
			} else {
				out.Username = u
			}
		}
	}
	return out
}
