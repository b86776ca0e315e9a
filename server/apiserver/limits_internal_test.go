package apiserver

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// deadlineWriter records the read deadlines set through a
// ResponseController.
type deadlineWriter struct {
	*httptest.ResponseRecorder
	deadlines []time.Time
}

func (w *deadlineWriter) SetReadDeadline(t time.Time) error {
	w.deadlines = append(w.deadlines, t)
	return nil
}

type timeoutReader struct{}

func (timeoutReader) Read([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }

// TestBodyTimeoutDeadline: the read deadline is set for requests with a
// body (not for long-running ones), cleared when the body has been read to
// its end, and a passed deadline reads as a 408.
func TestBodyTimeoutDeadline(t *testing.T) {
	w := &deadlineWriter{ResponseRecorder: httptest.NewRecorder()}
	r := httptest.NewRequest("POST", "/api/v1/namespaces/default/configmaps", strings.NewReader("{}"))
	bodyTimeout(w, r, parseRequestInfo(r), time.Minute)
	if len(w.deadlines) != 1 || time.Until(w.deadlines[0]) < 50*time.Second {
		t.Fatalf("deadlines %v", w.deadlines)
	}
	if _, err := io.ReadAll(r.Body); err != nil {
		t.Fatal(err)
	}
	if len(w.deadlines) != 2 || !w.deadlines[1].IsZero() {
		t.Fatalf("the deadline was not cleared at the end of the body: %v", w.deadlines)
	}

	for _, mp := range [][2]string{{"POST", "/api/v1/namespaces/default/pods/p/exec"}, {"GET", "/api/v1/namespaces/default/pods?watch=1"}} {
		method, path := mp[0], mp[1]
		w := &deadlineWriter{ResponseRecorder: httptest.NewRecorder()}
		r := httptest.NewRequest(method, path, strings.NewReader("{}"))
		bodyTimeout(w, r, parseRequestInfo(r), time.Minute)
		if len(w.deadlines) != 0 {
			t.Fatalf("%s: long-running request got a body deadline", path)
		}
	}

	w = &deadlineWriter{ResponseRecorder: httptest.NewRecorder()}
	r = httptest.NewRequest("POST", "/api/v1/namespaces/default/configmaps", nil)
	r.Body = io.NopCloser(timeoutReader{})
	bodyTimeout(w, r, parseRequestInfo(r), time.Minute)
	s := &APIServer{cfg: Config{MaxBodyBytes: MaxBodyBytes}}
	_, err := s.readBody(r)
	var st apierrors.APIStatus
	if !errors.As(err, &st) || st.Status().Code != http.StatusRequestTimeout || st.Status().Reason != metav1.StatusReasonTimeout ||
		!strings.Contains(err.Error(), "not received within 1m0s") {
		t.Fatalf("err %v", err)
	}
}
