package apiserver

import (
	"encoding/json"
	"mime"
	"net/http"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-io/skiff/server/registry"
)

var scaleGVK = autoscalingv1.SchemeGroupVersion.WithKind("Scale")

// serveSubresource serves the subresources other than status.
func (s *APIServer) serveSubresource(req *request) {
	verb := req.info.Verb
	switch sub := req.info.Subresource; sub {
	case registry.SubScale:
		switch verb {
		case "get":
			s.handleScaleGet(req)
		case "update":
			s.handleScaleUpdate(req)
		case "patch":
			s.handleScalePatch(req)
		default:
			s.writeError(req.w, req.r, methodNotSupported(req))
		}
	case registry.SubBinding:
		if verb != "create" {
			s.writeError(req.w, req.r, methodNotSupported(req))
			return
		}
		s.handleBinding(req)
	case registry.SubEviction:
		if verb != "create" {
			s.writeError(req.w, req.r, methodNotSupported(req))
			return
		}
		s.handleEviction(req)
	case registry.SubLog, registry.SubExec, registry.SubAttach, registry.SubPortForward:
		if verb != "get" && verb != "create" {
			s.writeError(req.w, req.r, methodNotSupported(req))
			return
		}
		s.handleStreaming(req)
	case registry.SubEphemeralContainers:
		switch verb {
		case "get":
			s.handleGet(req)
		case "update":
			s.handleUpdate(req)
		case "patch":
			s.handlePatch(req)
		default:
			s.writeError(req.w, req.r, methodNotSupported(req))
		}
	case registry.SubProxy:
		s.handleProxy(req) // proxy_resources.go
	case registry.SubFinalize:
		if verb != "update" {
			s.writeError(req.w, req.r, methodNotSupported(req))
			return
		}
		s.handleFinalize(req)
	case registry.SubApproval:
		switch verb {
		case "get":
			s.handleGet(req)
		case "update":
			s.handleApproval(req)
		default:
			s.writeError(req.w, req.r, methodNotSupported(req))
		}
	case registry.SubToken:
		if verb != "create" {
			s.writeError(req.w, req.r, methodNotSupported(req))
			return
		}
		s.handleTokenRequest(req)
	default:
		s.writeError(req.w, req.r, notFoundPath())
	}
}

// scaleOf builds the autoscaling/v1 Scale of obj.
func scaleOf(kind *registry.Kind, obj runtime.Object) *autoscalingv1.Scale {
	m := mustAccessor(obj)
	spec, status, sel := kind.Scale.Get(obj)
	return &autoscalingv1.Scale{
		TypeMeta: metav1.TypeMeta{Kind: "Scale", APIVersion: autoscalingv1.SchemeGroupVersion.String()},
		ObjectMeta: metav1.ObjectMeta{
			Name:              m.GetName(),
			Namespace:         m.GetNamespace(),
			UID:               m.GetUID(),
			ResourceVersion:   m.GetResourceVersion(),
			CreationTimestamp: m.GetCreationTimestamp(),
		},
		Spec:   autoscalingv1.ScaleSpec{Replicas: spec},
		Status: autoscalingv1.ScaleStatus{Replicas: status, Selector: sel},
	}
}

func (s *APIServer) handleScaleGet(req *request) {
	snap, err := s.readAt(req.r.Context(), req.r.URL.Query().Get("resourceVersion"))
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	_, obj, err := getObject(snap, req.kind, req.namespace(), req.info.Name)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	writeJSON(req.w, http.StatusOK, scaleOf(req.kind, obj))
}

// handleScaleUpdate serves PUT of a Scale: spec.replicas of the object
// changes; the Scale's resourceVersion and UID are preconditions.
func (s *APIServer) handleScaleUpdate(req *request) {
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	obj, warnings, err := s.decode.decodeBody(req.r, body, scaleGVK, &autoscalingv1.Scale{})
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	scale := obj.(*autoscalingv1.Scale)
	if scale.Name != "" && scale.Name != req.info.Name {
		s.writeError(req.w, req.r, badRequest("the name of the object (%s) does not match the name on the URL (%s)", scale.Name, req.info.Name))
		return
	}
	addWarnings(req.w, warnings)
	s.scaleTo(req, func(*autoscalingv1.Scale) (*autoscalingv1.Scale, error) { return scale, nil })
}

// handleScalePatch serves PATCH of a Scale (merge, strategic merge or JSON
// patch of the Scale document).
func (s *APIServer) handleScalePatch(req *request) {
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	ct := req.r.Header.Get("Content-Type")
	pt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		s.writeError(req.w, req.r, unsupportedMediaType(ct))
		return
	}
	p, err := s.newPatcher(req, pt, body, &autoscalingv1.Scale{})
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	s.scaleTo(req, func(cur *autoscalingv1.Scale) (*autoscalingv1.Scale, error) {
		orig, err := json.Marshal(cur)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		patched, err := p.apply(orig)
		if err != nil {
			return nil, err
		}
		out := &autoscalingv1.Scale{}
		if err := json.Unmarshal(patched, out); err != nil {
			return nil, badRequest("%v", err)
		}
		if out.ResourceVersion == cur.ResourceVersion {
			// The patch did not set one: no precondition.
			out.ResourceVersion = ""
		}
		return out, nil
	})
}

// scaleTo runs the read-modify-write of a scale change: next returns the
// wanted Scale from the current one.
func (s *APIServer) scaleTo(req *request, next func(cur *autoscalingv1.Scale) (*autoscalingv1.Scale, error)) {
	dry, err := dryRun(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	kind := req.kind
	u := &update{
		kind:      kind,
		namespace: req.namespace(),
		name:      req.info.Name,
		dry:       dry,
		tryUpdate: func(old runtime.Object) (runtime.Object, uint64, error) {
			want, err := next(scaleOf(kind, old))
			if err != nil {
				return nil, 0, err
			}
			if want.Spec.Replicas < 0 {
				return nil, 0, apierrors.NewInvalid(schema.GroupKind{Group: autoscalingv1.GroupName, Kind: "Scale"}, req.info.Name,
					field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), want.Spec.Replicas, "must be greater than or equal to 0")})
			}
			rv, err := parseRV(want.ResourceVersion)
			if err != nil {
				return nil, 0, err
			}
			m := mustAccessor(old)
			if want.UID != "" && want.UID != m.GetUID() {
				return nil, 0, apierrors.NewConflict(kind.GroupResource(), req.info.Name, errModified)
			}
			kind.Scale.Set(old, want.Spec.Replicas)
			return old, rv, nil
		},
	}
	out, _, err := s.guaranteedUpdate(req.r.Context(), u)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	writeJSON(req.w, http.StatusOK, scaleOf(kind, out))
}
