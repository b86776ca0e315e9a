package auth

import (
	"crypto/subtle"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
)

// ServiceAccountObjects looks up the objects a service-account token names;
// the server backs it with its local state. Returned objects are shared and
// must not be modified.
type ServiceAccountObjects interface {
	GetServiceAccount(namespace, name string) (*corev1.ServiceAccount, bool)
	GetPod(namespace, name string) (*corev1.Pod, bool)
	GetSecret(namespace, name string) (*corev1.Secret, bool)
	GetNode(name string) (*corev1.Node, bool)
}

// The extra information of service-account users, as kube-apiserver's.
const (
	ExtraPodName      = serviceaccount.PodNameKey
	ExtraPodUID       = serviceaccount.PodUIDKey
	ExtraNodeName     = serviceaccount.NodeNameKey
	ExtraNodeUID      = serviceaccount.NodeUIDKey
	ExtraCredentialID = user.CredentialIDKey
)

// deletionGrace is how long a token bound to an object being deleted
// stays valid (as Kubernetes: the pod's containers may still be
// terminating).
const deletionGrace = 60 * time.Second

// serviceAccountUser verifies a service-account JWT and checks that what it
// is bound to still exists: the service account (same UID), and the pod,
// secret or node it names (same UID; a legacy token's secret must still
// hold it). The user's extra names, as kube-apiserver's, the bound pod,
// the node (of the pod, or bound) and the token's "JTI=<jti>".
func (a *Authenticator) serviceAccountUser(token string) (*User, error) {
	reject := func(reason string, args ...any) (*User, error) {
		a.log.Info("rejected service-account token", append([]any{"reason", reason}, args...)...)
		return nil, ErrUnauthenticated
	}
	if a.saTokens == nil || a.objects == nil {
		return reject("service-account tokens are not enabled")
	}
	now := a.now()
	c, ok := a.verified.get(token, now)
	if !ok {
		var err error
		if c, err = a.saTokens.Verify(token, now); err != nil {
			return reject("verify", "err", err)
		}
		a.verified.put(token, c, now)
	}
	sa, ok := a.objects.GetServiceAccount(c.Namespace, c.ServiceAccount)
	if !ok {
		return reject("service account not found", "namespace", c.Namespace, "name", c.ServiceAccount)
	}
	if c.ServiceAccountUID != "" && sa.UID != c.ServiceAccountUID {
		return reject("service account UID differs", "namespace", c.Namespace, "name", c.ServiceAccount)
	}
	gone := func(m *metav1.ObjectMeta) bool {
		return m.DeletionTimestamp != nil && now.Sub(m.DeletionTimestamp.Time) > deletionGrace
	}
	if gone(&sa.ObjectMeta) {
		return reject("service account is being deleted", "namespace", c.Namespace, "name", c.ServiceAccount)
	}
	if c.Legacy {
		sec, ok := a.objects.GetSecret(c.Namespace, c.Secret.Name)
		if !ok {
			return reject("legacy token secret not found", "namespace", c.Namespace, "secret", c.Secret.Name)
		}
		if c.ServiceAccountUID == "" || subtle.ConstantTimeCompare(sec.Data[corev1.ServiceAccountTokenKey], []byte(token)) != 1 {
			return reject("legacy token secret holds another token", "namespace", c.Namespace, "secret", c.Secret.Name)
		}
	} else {
		if c.Pod != nil {
			p, ok := a.objects.GetPod(c.Namespace, c.Pod.Name)
			if !ok || p.UID != c.Pod.UID || gone(&p.ObjectMeta) {
				return reject("bound pod is gone", "namespace", c.Namespace, "pod", c.Pod.Name)
			}
		}
		if c.Secret != nil {
			s, ok := a.objects.GetSecret(c.Namespace, c.Secret.Name)
			if !ok || s.UID != c.Secret.UID || gone(&s.ObjectMeta) {
				return reject("bound secret is gone", "namespace", c.Namespace, "secret", c.Secret.Name)
			}
		}
		if c.Node != nil && c.Pod == nil {
			// Bound to the node itself (a pod-bound token's node is
			// only information).
			n, ok := a.objects.GetNode(c.Node.Name)
			if !ok || n.UID != c.Node.UID || gone(&n.ObjectMeta) {
				return reject("bound node is gone", "node", c.Node.Name)
			}
		}
	}
	return &User{
		Name:   ServiceAccountUser(c.Namespace, c.ServiceAccount),
		UID:    string(sa.UID),
		Groups: []string{GroupServiceAccounts, GroupServiceAccounts + ":" + c.Namespace, GroupAuthenticated},
		Extra:  serviceAccountExtra(c),
	}, nil
}

// serviceAccountExtra is the extra information of a verified token's
// user, as kube-apiserver's ServiceAccountInfo.UserInfo: the pod (name and
// UID), the node (name, and UID when known) and "JTI=<jti>"; nil for a
// legacy token.
func serviceAccountExtra(c *TokenClaims) map[string][]string {
	extra := map[string][]string{}
	if c.Pod != nil && c.Pod.Name != "" && c.Pod.UID != "" {
		extra[ExtraPodName] = []string{c.Pod.Name}
		extra[ExtraPodUID] = []string{string(c.Pod.UID)}
	}
	if c.Node != nil && c.Node.Name != "" {
		extra[ExtraNodeName] = []string{c.Node.Name}
		if c.Node.UID != "" {
			extra[ExtraNodeUID] = []string{string(c.Node.UID)}
		}
	}
	if c.ID != "" {
		extra[ExtraCredentialID] = []string{"JTI=" + c.ID}
	}
	if len(extra) == 0 {
		return nil
	}
	return extra
}
