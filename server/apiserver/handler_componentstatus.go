package apiserver

import (
	"context"
	"net/http"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ComponentStatuser reports the health of the control plane's parts for
// componentstatuses (kubectl get cs); the server backs it.
type ComponentStatuser interface {
	ComponentStatuses(ctx context.Context) []corev1.ComponentStatus
}

// serveComponentStatuses answers get and list of componentstatuses from
// Config.ComponentStatuses (none if nil). Nothing is stored.
func (s *APIServer) serveComponentStatuses(req *request) {
	var all []corev1.ComponentStatus
	if s.cfg.ComponentStatuses != nil {
		all = s.cfg.ComponentStatuses.ComponentStatuses(req.r.Context())
	}
	switch req.info.Verb {
	case "get":
		i := slices.IndexFunc(all, func(c corev1.ComponentStatus) bool { return c.Name == req.info.Name })
		if i < 0 {
			s.writeError(req.w, req.r, apierrors.NewNotFound(req.kind.GroupResource(), req.info.Name))
			return
		}
		obj := all[i].DeepCopy()
		obj.SetGroupVersionKind(req.kind.GVK)
		s.writeObject(req, http.StatusOK, obj)
	case "list":
		items := make([]runtime.Object, 0, len(all))
		for i := range all {
			items = append(items, all[i].DeepCopy())
		}
		s.writeList(req, items, metav1.ListMeta{})
	default:
		s.writeError(req.w, req.r, methodNotSupported(req))
	}
}
