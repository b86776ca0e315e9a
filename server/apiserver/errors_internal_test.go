package apiserver

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestWriteErrorRetryAfter: a Status carrying RetryAfterSeconds (the 503 of
// a master not fit to serve) sets the Retry-After header; others do not.
func TestWriteErrorRetryAfter(t *testing.T) {
	s := &APIServer{log: slog.New(slog.DiscardHandler)}
	r := httptest.NewRequest(http.MethodGet, "/api/v1/pods", nil)
	unavailable := apierrors.NewServiceUnavailable("this master's state is corrupt")
	unavailable.ErrStatus.Details = &metav1.StatusDetails{RetryAfterSeconds: 2}
	for _, tc := range []struct {
		err  error
		code int
		want string
	}{
		{unavailable, http.StatusServiceUnavailable, "2"},
		// An eviction's 429 reaches the client (client-go would retry it).
		{apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 10), http.StatusTooManyRequests, ""},
		{apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "x"), http.StatusNotFound, ""},
		{errors.New("plain"), http.StatusInternalServerError, ""},
	} {
		w := httptest.NewRecorder()
		s.writeError(w, r, tc.err)
		if w.Code != tc.code || w.Header().Get("Retry-After") != tc.want {
			t.Errorf("%v: code %d Retry-After %q, want %d %q", tc.err, w.Code, w.Header().Get("Retry-After"), tc.code, tc.want)
		}
	}
}
