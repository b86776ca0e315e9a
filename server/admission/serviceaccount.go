package admission

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilrand "k8s.io/apimachinery/pkg/util/rand"

	"github.com/skiff-io/skiff/fsm/state"
)

// Names and defaults of the service-account token volume, as Kubernetes'.
const (
	// ServiceAccountMountPath is where containers find their token, the
	// cluster CA and their namespace.
	ServiceAccountMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"
	// ServiceAccountVolumePrefix starts the name of the projected volume
	// (kube-api-access-<5 random characters>).
	ServiceAccountVolumePrefix = "kube-api-access-"
	// RootCAConfigMap is the ConfigMap of every namespace that holds the
	// cluster CA under RootCAKey.
	RootCAConfigMap = "kube-root-ca.crt"
	RootCAKey       = "ca.crt"
	// TokenExpirationSeconds is the lifetime the kubelet asks for the
	// projected token (an hour, plus 7 s so that it can be told apart).
	TokenExpirationSeconds = int64(3607)
	// mirrorPodAnnotation marks static pods' mirrors, which get no token.
	mirrorPodAnnotation = "kubernetes.io/config.mirror"
	// defaultSAAttempts: how many times a missing "default" service
	// account is looked up again (the controller may not have made it
	// yet in a new namespace), 100-200 ms apart, as kube-apiserver.
	defaultSAAttempts = 10
)

// defaultServiceAccount: a pod runs as the namespace's "default" service
// account unless it names another.
func defaultServiceAccount(a *Attributes) {
	p, ok := a.Object.(*corev1.Pod)
	if !ok {
		return
	}
	if p.Spec.ServiceAccountName == "" {
		p.Spec.ServiceAccountName = p.Spec.DeprecatedServiceAccount //nolint:staticcheck // the deprecated alias
	}
	if p.Spec.ServiceAccountName == "" {
		p.Spec.ServiceAccountName = "default"
	}
	p.Spec.DeprecatedServiceAccount = p.Spec.ServiceAccountName //nolint:staticcheck // kept equal, as Kubernetes
}

// serviceAccount is the rest of kube-apiserver's ServiceAccount plugin: the
// pod's service account must exist (403 "error looking up service
// account"), and unless automountServiceAccountToken is false on the pod
// (or, when the pod does not say, on the service account) the pod gets the
// kube-api-access-<random> projected volume (a bound token, the cluster CA
// and the namespace) mounted read-only at ServiceAccountMountPath in every
// container and init container that has nothing mounted there.
func (c *Chain) serviceAccount(ctx context.Context, snap *state.Snapshot, a *Attributes) error {
	pod, ok := a.Object.(*corev1.Pod)
	if !ok {
		return nil
	}
	if _, mirror := pod.Annotations[mirrorPodAnnotation]; mirror {
		return nil
	}
	sa, err := c.lookupServiceAccount(ctx, snap, a.Namespace, pod.Spec.ServiceAccountName)
	if err != nil {
		return apierrors.NewForbidden(a.Kind.GroupResource(), a.Name, fmt.Errorf("error looking up service account %s/%s: %w",
			a.Namespace, pod.Spec.ServiceAccountName, err))
	}
	automount := true
	switch {
	case pod.Spec.AutomountServiceAccountToken != nil:
		automount = *pod.Spec.AutomountServiceAccountToken
	case sa.AutomountServiceAccountToken != nil:
		automount = *sa.AutomountServiceAccountToken
	}
	if automount {
		mountServiceAccountToken(pod)
	}
	return nil
}

// lookupServiceAccount finds namespace/name in snap; a missing "default"
// account is looked up again in the linearizable state a few times.
func (c *Chain) lookupServiceAccount(ctx context.Context, snap *state.Snapshot, namespace, name string) (*corev1.ServiceAccount, error) {
	kind, ok := c.reg.Lookup("", "v1", "serviceaccounts")
	if !ok {
		return nil, fmt.Errorf("serviceaccounts are not served")
	}
	attempts := 1
	if name == "default" {
		attempts = defaultSAAttempts
	}
	for i := 0; ; i++ {
		if o := snap.Get(kind.Key(namespace, name)); o != nil {
			obj, err := kind.Decode(o)
			if err != nil {
				return nil, err
			}
			return obj.(*corev1.ServiceAccount), nil
		}
		if i+1 >= attempts {
			return nil, apierrors.NewNotFound(kind.GroupResource(), name)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(100+rand.IntN(100)) * time.Millisecond):
		}
		var err error
		if snap, err = c.reader.Read(ctx, true, 0); err != nil {
			return nil, err
		}
	}
}

// mountServiceAccountToken adds the projected token volume and its mounts.
func mountServiceAccountToken(pod *corev1.Pod) {
	names := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		names[v.Name] = true
	}
	name := ServiceAccountVolumePrefix + utilrand.String(5)
	for names[name] {
		name = ServiceAccountVolumePrefix + utilrand.String(5)
	}
	added := false
	mount := func(cs []corev1.Container) {
		for i := range cs {
			has := false
			for _, m := range cs[i].VolumeMounts {
				has = has || m.MountPath == ServiceAccountMountPath
			}
			if !has {
				cs[i].VolumeMounts = append(cs[i].VolumeMounts, corev1.VolumeMount{Name: name, ReadOnly: true, MountPath: ServiceAccountMountPath})
				added = true
			}
		}
	}
	mount(pod.Spec.InitContainers)
	mount(pod.Spec.Containers)
	if !added {
		return
	}
	exp := TokenExpirationSeconds
	mode := corev1.ProjectedVolumeSourceDefaultMode
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: &exp, Path: "token"}},
				{ConfigMap: &corev1.ConfigMapProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: RootCAConfigMap},
					Items:                []corev1.KeyToPath{{Key: RootCAKey, Path: RootCAKey}},
				}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
					Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
				}}}},
			},
			DefaultMode: &mode,
		},
	}})
}
