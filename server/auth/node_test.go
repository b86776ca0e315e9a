package auth

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type fakeNodeObjects struct {
	pods []*corev1.Pod
	// ingressSecrets are namespace/name of the Secrets Ingresses of the
	// built-in classes name in spec.tls.
	ingressSecrets []string
}

func (f fakeNodeObjects) PodNode(ns, name string) (string, bool) {
	for _, p := range f.pods {
		if p.Namespace == ns && p.Name == name {
			return p.Spec.NodeName, true
		}
	}
	return "", false
}

func (f fakeNodeObjects) IngressTLSSecret(namespace, name string) bool {
	for _, s := range f.ingressSecrets {
		if s == namespace+"/"+name {
			return true
		}
	}
	return false
}

func (f fakeNodeObjects) PodsOnNode(node, ns string, fn func(*corev1.Pod) bool) {
	for _, p := range f.pods {
		if p.Namespace == ns && p.Spec.NodeName == node && !fn(p) {
			return
		}
	}
}

func TestNodeAuthorizer(t *testing.T) {
	mine := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "mine"}, Spec: corev1.PodSpec{
		NodeName: "n1", ServiceAccountName: "robot",
		Volumes: []corev1.Volume{
			{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm-vol"}}}},
			{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "sec-proj"}}}}}}},
		},
		Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec-env"}, Key: "k"}}}}}},
	}}
	theirs := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "theirs"}, Spec: corev1.PodSpec{
		NodeName: "n2", ServiceAccountName: "builder",
		Volumes: []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "other-secret"}}}},
	}}
	authz := NewAuthorizer().WithNodeObjects(fakeNodeObjects{pods: []*corev1.Pod{mine, theirs}, ingressSecrets: []string{"app/site-tls"}})
	n1 := &User{Name: "system:node:n1", Groups: []string{"system:nodes", "system:authenticated"}}
	impostor := &User{Name: "system:node:n1", Groups: []string{"system:authenticated"}}
	res := func(verb, resource, sub, ns, name string) Attributes {
		return Attributes{Verb: verb, Resource: resource, Subresource: sub, Namespace: ns, Name: name}
	}
	lease := func(verb, name string) Attributes {
		return Attributes{Verb: verb, Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-node-lease", Name: name}
	}
	tests := []struct {
		name  string
		user  *User
		attrs Attributes
		allow bool
	}{
		{"create node", n1, res("create", "nodes", "", "", ""), true},
		{"get own node", n1, res("get", "nodes", "", "", "n1"), true},
		{"watch nodes", n1, res("watch", "nodes", "", "", ""), true},
		{"watch namespaces", n1, res("watch", "namespaces", "", "", ""), true},
		{"list networkpolicies", n1, Attributes{Verb: "list", Group: "networking.k8s.io", Resource: "networkpolicies"}, true},
		{"create networkpolicy", n1, Attributes{Verb: "create", Group: "networking.k8s.io", Resource: "networkpolicies", Namespace: "default"}, false},
		{"delete namespace", n1, res("delete", "namespaces", "", "", "default"), false},
		{"patch own node status", n1, res("patch", "nodes", "status", "", "n1"), true},
		{"update own node", n1, res("update", "nodes", "", "", "n1"), true},
		{"patch other node status", n1, res("patch", "nodes", "status", "", "n2"), false},
		{"delete own node", n1, res("delete", "nodes", "", "", "n1"), false},
		{"create lease", n1, lease("create", ""), true},
		{"update own lease", n1, lease("update", "n1"), true},
		{"get own lease", n1, lease("get", "n1"), true},
		{"update other lease", n1, lease("update", "n2"), false},
		{"lease elsewhere", n1, Attributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system", Name: "n1"}, false},
		{"watch pods", n1, res("watch", "pods", "", "", ""), true},
		{"get own pod", n1, res("get", "pods", "", "app", "mine"), true},
		{"get other pod", n1, res("get", "pods", "", "app", "theirs"), false},
		{"patch own pod status", n1, res("patch", "pods", "status", "app", "mine"), true},
		{"patch other pod status", n1, res("patch", "pods", "status", "app", "theirs"), false},
		{"delete own pod", n1, res("delete", "pods", "", "app", "mine"), true},
		{"delete other pod", n1, res("delete", "pods", "", "app", "theirs"), false},
		// A pod that is gone: the handler's 404, as Kubernetes answers
		// (NodeRestriction checks the binding of a pod that exists).
		{"delete gone pod", n1, res("delete", "pods", "", "app", "gone"), true},
		{"patch gone pod status", n1, res("patch", "pods", "status", "app", "gone"), true},
		{"update gone pod status", n1, res("update", "pods", "status", "app", "gone"), true},
		{"get gone pod", n1, res("get", "pods", "", "app", "gone"), false},
		{"create pod (a mirror pod: NodeRestriction checks the body)", n1, res("create", "pods", "", "app", ""), true},
		{"update own pod spec", n1, res("update", "pods", "", "app", "mine"), false},
		{"bind pod", n1, res("create", "pods", "binding", "app", "theirs"), false},
		{"exec pod", n1, res("create", "pods", "exec", "app", "mine"), false},
		{"create event", n1, res("create", "events", "", "app", ""), true},
		{"patch event", n1, res("patch", "events", "", "app", "e"), true},
		{"delete event", n1, res("delete", "events", "", "app", "e"), false},
		{"get referenced configmap", n1, res("get", "configmaps", "", "app", "cm-vol"), true},
		{"get projected secret", n1, res("get", "secrets", "", "app", "sec-proj"), true},
		{"get env secret", n1, res("get", "secrets", "", "app", "sec-env"), true},
		{"get secret of another node's pod", n1, res("get", "secrets", "", "app", "other-secret"), false},
		{"get unreferenced configmap", n1, res("get", "configmaps", "", "app", "random"), false},
		{"list secrets", n1, res("list", "secrets", "", "app", ""), false},
		{"get an Ingress's TLS secret", n1, res("get", "secrets", "", "app", "site-tls"), true},
		{"Ingress's TLS secret name, other namespace", n1, res("get", "secrets", "", "other", "site-tls"), false},
		{"watch an Ingress's TLS secret", n1, res("watch", "secrets", "", "app", "site-tls"), false},
		{"configmap of an Ingress's TLS secret name", n1, res("get", "configmaps", "", "app", "site-tls"), false},
		{"list ingresses", n1, Attributes{Verb: "list", Group: "networking.k8s.io", Resource: "ingresses"}, true},
		{"watch ingressclasses", n1, Attributes{Verb: "watch", Group: "networking.k8s.io", Resource: "ingressclasses"}, true},
		{"update ingress status", n1, Attributes{Verb: "update", Group: "networking.k8s.io", Resource: "ingresses", Subresource: "status", Namespace: "app", Name: "x"}, false},
		{"create ingress", n1, Attributes{Verb: "create", Group: "networking.k8s.io", Resource: "ingresses", Namespace: "app"}, false},
		{"same name, other namespace", n1, res("get", "configmaps", "", "other", "cm-vol"), false},
		{"token for own pod's account", n1, res("create", "serviceaccounts", "token", "app", "robot"), true},
		{"token for another node's pod's account", n1, res("create", "serviceaccounts", "token", "app", "builder"), false},
		{"token, same name, other namespace", n1, res("create", "serviceaccounts", "token", "other", "robot"), false},
		{"get own pod's account", n1, res("get", "serviceaccounts", "", "app", "robot"), false},
		{"watch services", n1, res("watch", "services", "", "", ""), true},
		{"create service", n1, res("create", "services", "", "app", ""), false},
		{"list deployments", n1, Attributes{Verb: "list", Group: "apps", Resource: "deployments"}, false},
		{"discovery", n1, Attributes{Verb: "get", Path: "/api"}, true},
		{"not in system:nodes", impostor, res("get", "nodes", "", "", "n1"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := authz.Authorize(tt.user, tt.attrs)
			if ok != tt.allow {
				t.Fatalf("Authorize = %v (%q), want %v", ok, reason, tt.allow)
			}
		})
	}
	// Without the pod lookup, nothing that needs it is allowed.
	bare := NewAuthorizer()
	if ok, _ := bare.Authorize(n1, res("get", "pods", "", "app", "mine")); ok {
		t.Errorf("pod get allowed without a pod lookup")
	}
}
