package fake

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FakeImageService simulates an image store: any image can be pulled
// unless its name contains "doesnotexist" or an error was injected for it.
type FakeImageService struct {
	mu     sync.Mutex
	images map[string]*runtimeapi.Image
	pulls  []string
	errs   map[string]error
	// PullDelay is how long each pull takes.
	PullDelay time.Duration
}

// NewFakeImageService returns an image service holding the given images.
func NewFakeImageService(present ...string) *FakeImageService {
	s := &FakeImageService{images: map[string]*runtimeapi.Image{}, errs: map[string]error{}}
	for _, name := range present {
		s.AddImage(name)
	}
	return s
}

// AddImage makes an image present.
func (s *FakeImageService) AddImage(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := normalizeImage(name)
	s.images[n] = &runtimeapi.Image{Id: imageID(n), RepoTags: []string{n}, Size: 1 << 20, Spec: &runtimeapi.ImageSpec{Image: n}}
}

// FailPulls makes pulls of name fail with err (nil clears it).
func (s *FakeImageService) FailPulls(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.errs, normalizeImage(name))
		return
	}
	s.errs[normalizeImage(name)] = err
}

// Pulls lists the images pulled so far, in order.
func (s *FakeImageService) Pulls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.pulls...)
}

// ListImages lists the present images.
func (s *FakeImageService) ListImages(_ context.Context, _ *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*runtimeapi.Image
	for _, img := range s.images {
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out, nil
}

// ImageStatus returns the image, or a response without one when absent.
func (s *FakeImageService) ImageStatus(_ context.Context, image *runtimeapi.ImageSpec, _ bool) (*runtimeapi.ImageStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &runtimeapi.ImageStatusResponse{Image: s.images[normalizeImage(image.GetImage())]}, nil
}

// PullImage makes the image present and returns its reference.
func (s *FakeImageService) PullImage(ctx context.Context, image *runtimeapi.ImageSpec, _ *runtimeapi.AuthConfig, _ *runtimeapi.PodSandboxConfig) (string, error) {
	name := normalizeImage(image.GetImage())
	s.mu.Lock()
	s.pulls = append(s.pulls, name)
	err, delay := s.errs[name], s.PullDelay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(delay):
		}
	}
	if err != nil {
		return "", err
	}
	if strings.Contains(name, "doesnotexist") {
		return "", status.Errorf(codes.NotFound, "pull %s: manifest unknown", name)
	}
	s.AddImage(name)
	return imageID(name), nil
}

// RemoveImage removes an image.
func (s *FakeImageService) RemoveImage(_ context.Context, image *runtimeapi.ImageSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.images, normalizeImage(image.GetImage()))
	return nil
}

// ImageFsInfo reports an empty image file system.
func (s *FakeImageService) ImageFsInfo(context.Context) (*runtimeapi.ImageFsInfoResponse, error) {
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{{
		Timestamp: time.Now().UnixNano(), FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: "/fake"},
		UsedBytes: &runtimeapi.UInt64Value{}, InodesUsed: &runtimeapi.UInt64Value{},
	}}}, nil
}
