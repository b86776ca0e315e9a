package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func (s *Store) leasePath(id string) string {
	return filepath.Join(s.root, "leases", id)
}

func validLeaseID(id string) error {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return fmt.Errorf("invalid container id %q", id)
	}
	return nil
}

// leasedImages returns the IDs of images that containers use.
func (s *Store) leasedImages() (map[string]bool, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "leases"))
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(s.root, "leases", e.Name()))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		out[strings.TrimSpace(string(b))] = true
	}
	return out, nil
}

// Leases returns the container IDs holding an image lease, for the runtime
// to drop those of containers it no longer has.
func (s *Store) Leases() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "leases"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out, nil
}

// ReleaseLease drops the image lease of a container whose rootfs is gone.
func (s *Store) ReleaseLease(id string) error {
	if err := validLeaseID(id); err != nil {
		return err
	}
	if err := os.Remove(s.leasePath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
