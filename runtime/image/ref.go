package image

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// dockerHubRegistry is how go-containerregistry spells the default registry;
// Kubernetes and this store spell it docker.io.
const dockerHubRegistry = "index.docker.io"

// NormalizeRef turns a user-written image reference ("busybox",
// "example.com/app:v1", "repo@sha256:...") into its full form
// ("docker.io/library/busybox:latest"), the form stored in the index.
func NormalizeRef(ref string) (string, error) {
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	return formatRef(r), nil
}

func formatRef(r name.Reference) string {
	repo := repoName(r.Context())
	if d, ok := r.(name.Digest); ok {
		return repo + "@" + d.DigestStr()
	}
	return repo + ":" + r.Identifier()
}

// repoName is registry/repository with docker.io for Docker Hub.
func repoName(repo name.Repository) string {
	reg := repo.RegistryStr()
	if reg == dockerHubRegistry {
		reg = "docker.io"
	}
	return reg + "/" + repo.RepositoryStr()
}

// registryHost is the registry part of a normalized reference, docker.io for
// Docker Hub: the key used in registries.yaml and in the docker config file.
func registryHost(repo name.Repository) string {
	reg := repo.RegistryStr()
	if reg == dockerHubRegistry {
		return "docker.io"
	}
	return reg
}

// looksLikeID reports whether s is an image ID or a hex prefix of one.
func looksLikeID(s string) bool {
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) < 12 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
