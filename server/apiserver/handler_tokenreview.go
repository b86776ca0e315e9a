package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/server/auth"
)

// tokenReview authenticates spec.token with the server's own
// authenticator (service-account JWTs, bootstrap tokens, the join token),
// as kube-apiserver answers TokenReviews for webhooks and extension API
// servers. The token is valid for the API audiences; spec.audiences, when
// set, must include one of them and status.audiences lists those.
func (s *APIServer) tokenReview(req *request, tr *authenticationv1.TokenReview) (runtime.Object, error) {
	if tr.Spec.Token == "" {
		return nil, badRequest("token is required for TokenReview")
	}
	var apiAuds []string
	if s.cfg.ServiceAccountTokens != nil {
		apiAuds = s.cfg.ServiceAccountTokens.APIAudiences()
	}
	auds := apiAuds
	if len(tr.Spec.Audiences) > 0 {
		auds = nil
		for _, a := range tr.Spec.Audiences {
			if slices.Contains(apiAuds, a) {
				auds = append(auds, a)
			}
		}
	}
	tr.Status = authenticationv1.TokenReviewStatus{}
	if len(tr.Spec.Audiences) > 0 && len(auds) == 0 {
		tr.Status.Error = fmt.Sprintf("token audiences %q is invalid for the target audiences %q", apiAuds, tr.Spec.Audiences)
		return tr, nil
	}
	probe, err := http.NewRequestWithContext(req.r.Context(), http.MethodGet, "/", nil)
	if err != nil {
		return nil, err
	}
	probe.Header.Set("Authorization", "Bearer "+tr.Spec.Token)
	u, err := s.authn.Authenticate(probe)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		tr.Status.Error = "invalid bearer token"
		return tr, nil
	case err != nil:
		return nil, err
	}
	tr.Status.Authenticated = true
	tr.Status.Audiences = auds
	tr.Status.User = u.UserInfo()
	return tr, nil
}
