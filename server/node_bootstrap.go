package server

import (
	"encoding/json"
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/pki"
)

// Nodes get their certificates through CertificateSigningRequests
// (certificates.k8s.io/v1), approved and signed by the leader
// (server/controller/certificates); see docs/security.md.

// NodeCredentials issues the keys and certificates of this master's own
// node (the embedded agent takes them in-process: no token, and the keys
// never leave the process).
func (s *Server) NodeCredentials(nodeName string, addresses []string) (*pki.NodeCredentials, error) {
	return s.ca.IssueNodeCredentials(nodeName, addresses, s.cfg.NodeCertLifetime)
}

// APIURL is this master's API URL.
func (s *Server) APIURL() string { return s.cfg.apiURL() }

// Config returns the master's configuration with defaults applied.
func (s *Server) Config() Config { return s.cfg }

// AdminTLS returns the CA and this master's certificate and key (its
// client identity skiff:servers), for in-process clients such as the
// embedded agent's pod binder.
func (s *Server) AdminTLS() (caPEM, certPEM, keyPEM []byte) {
	return s.ca.CertPEM, s.serverCert, s.serverKey
}

// writeStatus answers err (an API status error) as a metav1.Status.
func writeStatus(w http.ResponseWriter, err error) {
	var as apierrors.APIStatus
	if !errors.As(err, &as) {
		as = apierrors.NewInternalError(err)
	}
	st := as.Status()
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	st.Status = metav1.StatusFailure
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(&st)
}
