package apiserver

import (
	"context"
	"net/url"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-io/skiff/server/admission"
	"github.com/skiff-io/skiff/server/registry"
)

// ConnectAdmission is an optional part of Admission: the admission of a
// CONNECT (pods/attach, pods/exec, pods/portforward) before it is proxied.
type ConnectAdmission interface {
	AdmitConnect(ctx context.Context, a *admission.Attributes) error
}

// admitConnect admits a pods/attach, exec or portforward request, as
// kube-apiserver does before it proxies one: the webhooks whose rules
// list CONNECT see the request's options (PodAttachOptions,
// PodExecOptions, PodPortForwardOptions, from the query) and may refuse
// it, and the client gets their answer instead of a stream.
func (s *APIServer) admitConnect(req *request, pod *corev1.Pod) error {
	ca, ok := s.cfg.Admission.(ConnectAdmission)
	if !ok {
		return nil
	}
	opts, kind := connectOptions(req.info.Subresource, req.r.URL.Query())
	if opts == nil {
		return nil
	}
	a := &admission.Attributes{Operation: admission.Connect, Kind: req.kind, Namespace: pod.Namespace, Name: pod.Name,
		Subresource: req.info.Subresource, Object: opts, ObjectKind: corev1.SchemeGroupVersion.WithKind(kind)}
	return admissionError(ca.AdmitConnect(req.r.Context(), a))
}

// connectOptions are the options of a CONNECT subresource's request, read
// from its query as kube-apiserver's parameter codec reads them.
func connectOptions(sub string, q url.Values) (runtime.Object, string) {
	flag := func(k string) bool { b, _ := strconv.ParseBool(q.Get(k)); return b }
	switch sub {
	case registry.SubAttach:
		o := &corev1.PodAttachOptions{Stdin: flag("stdin"), Stdout: flag("stdout"), Stderr: flag("stderr"), TTY: flag("tty"), Container: q.Get("container")}
		return withKind(o, "PodAttachOptions"), "PodAttachOptions"
	case registry.SubExec:
		o := &corev1.PodExecOptions{Stdin: flag("stdin"), Stdout: flag("stdout"), Stderr: flag("stderr"), TTY: flag("tty"), Container: q.Get("container"),
			Command: q["command"]}
		return withKind(o, "PodExecOptions"), "PodExecOptions"
	case registry.SubPortForward:
		o := &corev1.PodPortForwardOptions{}
		for _, p := range q["ports"] {
			if n, err := strconv.ParseInt(p, 10, 32); err == nil {
				o.Ports = append(o.Ports, int32(n))
			}
		}
		return withKind(o, "PodPortForwardOptions"), "PodPortForwardOptions"
	}
	return nil, ""
}

func withKind(obj runtime.Object, kind string) runtime.Object {
	obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: kind})
	return obj
}
