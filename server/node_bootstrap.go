package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/pki"
)

// nodeCSRResource names what node bootstrap signs, in its error statuses.
var nodeCSRResource = schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}

// handleNodeBootstrap signs a node's certificate requests: its client
// certificate system:node:<name> in system:nodes and its kubelet serving
// certificate. The node made the keys and keeps them. Who may ask:
//
//   - an agent token (a bootstrap token, group system:bootstrappers), for a
//     node joining, as kube-controller-manager approves a bootstrapper's
//     nodeclient CSR, unless the name is a master's;
//   - a node, with its current client certificate, for itself only
//     (renewal, as the selfnodeclient approval);
//   - the server token, for agents set up before agent tokens existed
//     (docs/security.md); it too gets only the node certificates;
//   - masters.
//
// The answer carries certificates, never a key.
func (s *Server) handleNodeBootstrap(w http.ResponseWriter, r *http.Request) {
	u, err := s.authn.Authenticate(r)
	if err != nil {
		writeStatus(w, apierrors.NewUnauthorized("node bootstrap takes an agent token or the node's certificate"))
		return
	}
	var req pki.NodeBootstrapRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeStatus(w, apierrors.NewBadRequest("bad node bootstrap request: "+err.Error()))
		return
	}
	if err := s.mayBootstrapNode(r, u, req.NodeName); err != nil {
		writeStatus(w, err)
		return
	}
	if msgs := validation.IsDNS1123Subdomain(req.NodeName); len(msgs) > 0 {
		writeStatus(w, apierrors.NewInvalid(schema.GroupKind{Group: nodeCSRResource.Group, Kind: "CertificateSigningRequest"}, req.NodeName,
			field.ErrorList{field.Invalid(field.NewPath("nodeName"), req.NodeName, strings.Join(msgs, "; "))}))
		return
	}
	if req.ClientCSR == "" || req.ServingCSR == "" {
		writeStatus(w, apierrors.NewBadRequest("node bootstrap needs clientCSR and servingCSR: the node makes its own keys (an agent older than this master must be upgraded)"))
		return
	}
	certs, err := s.ca.SignNodeCSRs(req, s.cfg.NodeCertLifetime)
	if err != nil {
		if errors.Is(err, pki.ErrNodeCSR) {
			writeStatus(w, apierrors.NewForbidden(nodeCSRResource, req.NodeName, err))
			return
		}
		writeStatus(w, apierrors.NewInternalError(err))
		return
	}
	s.log.Info("signed node certificates", "node", req.NodeName, "by", u.Name)
	writeJSON(w, certs)
}

// mayBootstrapNode decides whether u may get the certificates of node.
func (s *Server) mayBootstrapNode(r *http.Request, u *auth.User, node string) error {
	fromCert := r.TLS != nil && len(r.TLS.VerifiedChains) > 0
	switch {
	case u.InGroup(auth.GroupSkiffServers):
		return nil
	case fromCert && u.InGroup(auth.GroupNodes) && strings.HasPrefix(u.Name, auth.NodeUserPrefix):
		if u.Name == auth.NodeUserPrefix+node {
			return nil
		}
		return apierrors.NewForbidden(nodeCSRResource, node, fmt.Errorf("%s may renew only its own certificates", u.Name))
	case !fromCert && u.Name == auth.UserJoiner:
		s.log.Warn("node bootstrapped with the server token; give nodes an agent token (skiff token create)", "node", node)
		return nil
	case !fromCert && u.InGroup(auth.GroupBootstrappers) && strings.HasPrefix(u.Name, auth.BootstrapUserPrefix):
		// A master's own node takes its credentials from its master, never
		// through a token: an agent token cannot become a master's node.
		if _, isMaster := s.lookupMember(node); isMaster {
			return apierrors.NewForbidden(nodeCSRResource, node, fmt.Errorf("%s is a master's node: its credentials come from its master", node))
		}
		return nil
	}
	return apierrors.NewForbidden(nodeCSRResource, node, fmt.Errorf("user %q may not bootstrap nodes", u.Name))
}

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
