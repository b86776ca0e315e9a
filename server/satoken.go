package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/pki"
)

// loadServiceAccountKey makes sure <data-dir>/tls/service-account.key
// holds the key that signs service-account tokens, and builds the signer.
// Every master of a cluster must hold the same key:
//
//   - a new cluster generates one (ECDSA P-256) with its CA: received
//     is that key;
//   - a joining master receives the cluster's key with the CA in the
//     bootstrap response (received);
//   - a master resuming its data dir reads the file;
//   - a data dir without the file (a cluster made before service-account
//     keys existed, or a master that joined through one) derives the key
//     from the cluster CA's private key, which every master holds: all
//     masters of such a cluster compute the same key without talking to
//     each other, and masters that join later receive it.
//
// The file is written atomically (0600) so that it survives restarts.
func (s *Server) loadServiceAccountKey(received []byte) error {
	path := filepath.Join(s.cfg.tlsDir(), pki.ServiceAccountKeyFile)
	keyPEM := received
	if len(keyPEM) == 0 {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			keyPEM = b
		case errors.Is(err, os.ErrNotExist):
			if keyPEM, err = pki.DeriveServiceAccountKey(s.ca.KeyPEM); err != nil {
				return err
			}
			s.log.Info("derived the service-account signing key from the cluster CA key", "file", path)
		default:
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
	key, err := pki.ParseServiceAccountKey(keyPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tokens, err := auth.NewServiceAccountTokens(key, auth.TokenConfig{
		Issuer: s.cfg.ServiceAccountIssuer, APIAudiences: s.cfg.APIAudiences, MaxExpiration: s.cfg.ServiceAccountMaxTokenExpiration,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := pki.WriteFileAtomic(path, keyPEM, 0o600); err != nil {
		return err
	}
	s.saKeyPEM, s.saTokens = keyPEM, tokens
	return nil
}

// ensureDefaultServiceAccount creates the "default" service account of a
// system namespace with the namespace itself (the service account
// controller does it for every other namespace), so that pods created
// right after a master is ready are admitted.
func (s *Server) ensureDefaultServiceAccount(ctx context.Context, namespace string) error {
	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: namespace},
	}
	return s.ensureObject(ctx, state.Key{Resource: "serviceaccounts", Namespace: namespace, Name: "default"},
		&sa.ObjectMeta, metav1.NewTime(time.Now().UTC().Truncate(time.Second)), sa)
}

// handleOpenIDConfiguration serves the service-account issuer's discovery
// document (public, as kube-apiserver's).
func (s *Server) handleOpenIDConfiguration(w http.ResponseWriter, r *http.Request) {
	iss := strings.TrimRight(s.saTokens.Issuer(), "/")
	jwks := iss + "/openid/v1/jwks"
	if !strings.HasPrefix(iss, "https://") {
		jwks = s.cfg.apiURL() + "/openid/v1/jwks"
	}
	b, err := s.saTokens.OpenIDConfiguration(jwks)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(b)
}

// handleJWKS serves the public key that verifies service-account tokens.
func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	b, err := s.saTokens.JWKS()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(b)
}

// saObjects lets the authenticator check what service-account tokens are
// bound to, in the local state.
type saObjects struct{ s *Server }

func (o saObjects) get(resource, namespace, name string, into any) bool {
	obj := o.s.fsm.Read().Get(state.Key{Resource: resource, Namespace: namespace, Name: name})
	if obj == nil {
		return false
	}
	if err := json.Unmarshal(obj.Data, into); err != nil {
		o.s.log.Error("undecodable object", "resource", resource, "namespace", namespace, "name", name, "err", err)
		return false
	}
	return true
}

func (o saObjects) GetServiceAccount(namespace, name string) (*corev1.ServiceAccount, bool) {
	var sa corev1.ServiceAccount
	return &sa, o.get("serviceaccounts", namespace, name, &sa)
}

func (o saObjects) GetPod(namespace, name string) (*corev1.Pod, bool) {
	var p corev1.Pod
	return &p, o.get("pods", namespace, name, &p)
}

func (o saObjects) GetNode(name string) (*corev1.Node, bool) {
	var n corev1.Node
	return &n, o.get("nodes", "", name, &n)
}

func (o saObjects) GetSecret(namespace, name string) (*corev1.Secret, bool) {
	return secretGetter(o).GetSecret(namespace, name)
}
