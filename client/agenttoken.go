package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/pki"
)

// ErrNoSuchToken means skiff token delete named a token that does not
// exist.
var ErrNoSuchToken = errors.New("no such agent token")

// AgentTokens manages agent tokens (Kubernetes bootstrap tokens, Secrets
// kube-system/bootstrap-token-<id>) with an admin kubeconfig.
type AgentTokens struct {
	cs     kubernetes.Interface
	master *Master
}

// NewAgentTokens connects to the master of kubeconfig.
func NewAgentTokens(kubeconfig string) (*AgentTokens, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	m, err := NewMaster(kubeconfig)
	if err != nil {
		return nil, err
	}
	return &AgentTokens{cs: cs, master: m}, nil
}

// Create makes an agent token valid for ttl (0: no expiry) and returns it
// in the K10<ca-hash>::<id>.<secret> form agents take.
func (a *AgentTokens) Create(ctx context.Context, ttl time.Duration, description string) (string, error) {
	if ttl < 0 {
		return "", fmt.Errorf("negative TTL %s", ttl)
	}
	// The hash pins the CA as the master serves it.
	caPEM, err := a.master.Do(ctx, http.MethodGet, "/cacerts")
	if err != nil {
		return "", fmt.Errorf("cluster CA: %w", err)
	}
	id, secret, err := pki.GenerateBootstrapToken()
	if err != nil {
		return "", err
	}
	var expires time.Time
	if ttl > 0 {
		expires = time.Now().Add(ttl)
	}
	s := auth.NewBootstrapTokenSecret(id, secret, description, expires)
	if _, err := a.cs.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("create agent token: %w", err)
	}
	return pki.FormatAgentToken(caPEM, id+"."+secret), nil
}

// List returns the bootstrap tokens, by ID, without their secrets.
func (a *AgentTokens) List(ctx context.Context) ([]auth.BootstrapTokenInfo, error) {
	l, err := a.cs.CoreV1().Secrets(auth.BootstrapTokenNamespace).List(ctx, metav1.ListOptions{FieldSelector: "type=bootstrap.kubernetes.io/token"})
	if err != nil {
		return nil, fmt.Errorf("list agent tokens: %w", err)
	}
	var out []auth.BootstrapTokenInfo
	for i := range l.Items {
		if info, ok := auth.BootstrapTokenInfoOf(&l.Items[i]); ok {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Delete removes the token id (the id, or the whole token). A node that
// joined with it keeps its certificates.
func (a *AgentTokens) Delete(ctx context.Context, id string) error {
	if _, bt, err := pki.ParseToken(id); err == nil && pki.IsAgentSecret(bt) {
		id = bt
	}
	id, _, _ = strings.Cut(id, ".")
	err := a.cs.CoreV1().Secrets(auth.BootstrapTokenNamespace).Delete(ctx, auth.BootstrapTokenSecretPrefix+id, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: %s", ErrNoSuchToken, id)
	}
	if err != nil {
		return fmt.Errorf("delete agent token %s: %w", id, err)
	}
	return nil
}
