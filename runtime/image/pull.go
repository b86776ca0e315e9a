package image

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func defaultPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}
}

type pullCall struct {
	done chan struct{}
	id   string
	err  error
}

// Pull fetches an image from its registry (or a mirror of it from
// registries.yaml) and returns its ID. For a manifest list, the image of the
// store's platform (linux/<GOARCH> by default) is taken. cred, if not nil,
// is used for the image's registry (a pod's image pull secret); otherwise
// registries.yaml and then the docker config file provide credentials.
// Concurrent pulls of the same reference share one download.
func (s *Store) Pull(ctx context.Context, ref string, cred *authn.AuthConfig) (string, error) {
	norm, err := NormalizeRef(ref)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	if c, ok := s.pulls[norm]; ok {
		s.mu.Unlock()
		select {
		case <-c.done:
			return c.id, c.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	c := &pullCall{done: make(chan struct{})}
	s.pulls[norm] = c
	s.mu.Unlock()

	c.id, c.err = s.pull(ctx, norm, cred)
	s.mu.Lock()
	delete(s.pulls, norm)
	s.mu.Unlock()
	close(c.done)
	return c.id, c.err
}

func (s *Store) pull(ctx context.Context, norm string, cred *authn.AuthConfig) (string, error) {
	parsed, err := name.ParseReference(norm, name.WeakValidation)
	if err != nil {
		return "", err
	}
	regs, err := LoadRegistries(s.opts.RegistriesFile)
	if err != nil {
		return "", err
	}
	auths, err := dockerAuths(s.opts.DockerConfig)
	if err != nil {
		return "", err
	}
	upstream := registryHost(parsed.Context())
	eps, err := regs.endpoints(upstream)
	if err != nil {
		return "", err
	}
	report := progressFrom(ctx)
	report(Progress{Ref: norm, Phase: "resolving"})
	var errs []error
	for _, ep := range eps {
		id, err := s.pullFrom(ctx, norm, parsed, ep, regs, auths, cred)
		if err == nil {
			s.log.Info("pulled image", "ref", norm, "id", id, "from", ep.host)
			return id, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		s.log.Warn("pull from endpoint failed", "ref", norm, "endpoint", ep.host, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", ep.host, err))
	}
	return "", fmt.Errorf("pull %s: %w", norm, errors.Join(errs...))
}

func (s *Store) pullFrom(ctx context.Context, norm string, parsed name.Reference, ep endpoint, regs *Registries, auths map[string]authn.AuthConfig, cred *authn.AuthConfig) (string, error) {
	var opts []name.Option
	opts = append(opts, name.WeakValidation)
	if ep.insecure {
		opts = append(opts, name.Insecure)
	}
	sep := ":"
	if _, ok := parsed.(name.Digest); ok {
		sep = "@"
	}
	at, err := name.ParseReference(ep.host+"/"+parsed.Context().RepositoryStr()+sep+parsed.Identifier(), opts...)
	if err != nil {
		return "", err
	}
	epHost := ep.host
	if epHost == dockerHubRegistry {
		epHost = "docker.io"
	}
	t, err := regs.transport(epHost)
	if err != nil {
		return "", err
	}
	var a authn.Authenticator = authn.Anonymous
	switch {
	case regs.auth(epHost) != nil:
		a = regs.auth(epHost)
	case cred != nil:
		a = authn.FromConfig(*cred)
	default:
		if c, ok := auths[epHost]; ok {
			a = authn.FromConfig(c)
		}
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(a), remote.WithTransport(t), remote.WithPlatform(s.platform)}
	desc, err := remote.Get(at, ropts...)
	if err != nil {
		return "", err
	}
	var img v1.Image
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return "", err
		}
		img, err = s.selectPlatform(idx)
		if err != nil {
			return "", err
		}
	} else {
		img, err = desc.Image()
		if err != nil {
			return "", err
		}
	}
	repo := repoName(parsed.Context())
	var tags []string
	if _, ok := parsed.(name.Tag); ok {
		tags = []string{norm}
	}
	digests := []string{repo + "@" + desc.Digest.String()}
	return s.storeImage(ctx, norm, img, tags, digests, false)
}
