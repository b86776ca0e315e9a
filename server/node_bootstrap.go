package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/pki"
)

// handleNodeBootstrap issues an agent's node credentials (client
// certificate system:node:<name> in system:nodes, kubelet serving
// certificate) to a holder of the join token. The agent checked this
// master's CA against the token's hash before sending the secret.
func (s *Server) handleNodeBootstrap(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if u.Name != auth.UserJoiner && !u.InGroup(auth.GroupSkiffServers) {
		http.Error(w, "Forbidden: node bootstrap takes the cluster join token", http.StatusForbidden)
		return
	}
	var req pki.NodeBootstrapRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		http.Error(w, "bad node bootstrap request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if msgs := validation.IsDNS1123Subdomain(req.NodeName); len(msgs) > 0 {
		http.Error(w, "invalid node name "+req.NodeName+": "+strings.Join(msgs, "; "), http.StatusUnprocessableEntity)
		return
	}
	if len(req.Addresses) > 16 {
		http.Error(w, "too many addresses", http.StatusBadRequest)
		return
	}
	creds, err := s.NodeCredentials(req.NodeName, req.Addresses)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info("issued node credentials", "node", req.NodeName, "addresses", req.Addresses)
	writeJSON(w, creds)
}

// NodeCredentials issues the credentials of a node (the embedded agent
// takes them directly; remote agents through node bootstrap).
func (s *Server) NodeCredentials(nodeName string, addresses []string) (*pki.NodeCredentials, error) {
	return s.ca.IssueNodeCredentials(nodeName, addresses)
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
