package apiserver

import (
	"net/http"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// isSelfSubjectReview: POST /apis/authentication.k8s.io/v1/selfsubjectreviews,
// which `kubectl auth whoami` sends. Nothing is stored, so the kind is not
// in the registry (nor in discovery).
func isSelfSubjectReview(info *requestInfo) bool {
	return info.IsResource && info.Group == authenticationv1.GroupName && info.Version == "v1" &&
		info.Resource == "selfsubjectreviews" && info.Namespace == "" && info.Name == "" && info.Subresource == ""
}

// handleSelfSubjectReview answers who the caller is, as kube-apiserver.
func (s *APIServer) handleSelfSubjectReview(req *request) {
	if req.info.Verb != "create" {
		s.writeError(req.w, req.r, apierrors.NewMethodNotSupported(authenticationv1.Resource("selfsubjectreviews"), req.info.Verb))
		return
	}
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	if len(body) > 0 {
		if _, _, err := s.decode.decodeBody(req.r, body, authenticationv1.SchemeGroupVersion.WithKind("SelfSubjectReview"), &authenticationv1.SelfSubjectReview{}); err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
	}
	out := &authenticationv1.SelfSubjectReview{
		TypeMeta:   metav1.TypeMeta{Kind: "SelfSubjectReview", APIVersion: authenticationv1.SchemeGroupVersion.String()},
		ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(s.now().UTC().Truncate(time.Second))},
		Status:     authenticationv1.SelfSubjectReviewStatus{UserInfo: req.user.UserInfo()},
	}
	writeJSON(req.w, http.StatusCreated, out)
}
