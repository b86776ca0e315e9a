package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/server/auth"
)

// Internal endpoints, served on the API port under /internal/v1/. Only
// masters (client certificates of organisation skiff:servers) and cluster
// admins reach them, except bootstrap, which takes the server token, and
// gossip, which nodes read.
const maxEntrySize = 8 << 20

func (s *Server) internalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /internal/v1/apply", s.requireServer(s.handleApply))
	mux.HandleFunc("GET /internal/v1/readindex", s.requireServer(s.handleReadIndex))
	mux.HandleFunc("GET /internal/v1/digest/{index}", s.requireServer(s.handleDigest))
	mux.HandleFunc("GET /internal/v1/snapshot", s.requireServer(s.handleSnapshot))
	mux.HandleFunc("POST /internal/v1/bootstrap", s.handleBootstrap)
	mux.HandleFunc("POST /internal/v1/join", s.requireServer(s.handleJoin))
	mux.HandleFunc("GET /internal/v1/members", s.requireReader(s.handleMembers))
	mux.HandleFunc("DELETE /internal/v1/members/{name}", s.requireAdmin(s.handleRemoveMember))
	mux.HandleFunc("GET /internal/v1/addons", s.requireAdmin(s.handleAddons))
	mux.HandleFunc("GET /internal/v1/addons/manifests/{name}", s.requireServer(s.handleAddonManifest))
	mux.HandleFunc("GET /internal/v1/gossip", s.handleGossipInfo)
	mux.HandleFunc("GET /internal/v1/gossip/members", s.requireReader(s.handleGossipMembers))
	mux.HandleFunc("POST /internal/v1/gossip/rotate", s.requireAdmin(s.handleGossipRotate))
	mux.HandleFunc("GET /internal/v1/secrets-encrypt", s.requireAdmin(s.handleEncryptionStatus))
	mux.HandleFunc("GET /internal/v1/snapshots", s.requireAdmin(s.handleSnapshotList))
	mux.HandleFunc("POST /internal/v1/snapshots", s.requireAdmin(s.handleSnapshotSave))
	mux.HandleFunc("GET /internal/v1/snapshots/files/{name}", s.requireAdmin(s.handleSnapshotGet))
	mux.HandleFunc("PUT /internal/v1/snapshots/files/{name}", s.requireServer(s.handleSnapshotPut))
	mux.HandleFunc("DELETE /internal/v1/snapshots/files/{name}", s.requireAdmin(s.handleSnapshotDelete))
	mux.HandleFunc("POST /internal/v1/secrets-encrypt/rotate", s.requireAdmin(s.handleEncryptionRotate))
	return mux
}

func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*auth.User, bool) {
	u, err := s.authn.Authenticate(r)
	if err != nil {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return nil, false
	}
	return u, true
}

func (s *Server) requireServer(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if !u.InGroup(auth.GroupSkiffServers) {
			http.Error(w, "Forbidden: masters only", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

func (s *Server) requireAdmin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if !u.InGroup(auth.GroupSkiffServers) && !u.InGroup(auth.GroupMasters) {
			http.Error(w, "Forbidden: cluster admins only", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

// requireReader lets masters, cluster admins and users RBAC allows "get"
// on the path as a non-resource URL (the bootstrap role skiff:dashboard
// has /internal/v1/members and /internal/v1/gossip/members) read it.
func (s *Server) requireReader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if !u.InGroup(auth.GroupSkiffServers) && !u.InGroup(auth.GroupMasters) {
			if allowed, _ := s.authz.Authorize(u, auth.Attributes{Verb: "get", Path: r.URL.Path}); !allowed {
				http.Error(w, `Forbidden: user "`+u.Name+`" cannot get path "`+r.URL.Path+`"`, http.StatusForbidden)
				return
			}
		}
		h(w, r)
	}
}

func (s *Server) handleReadIndex(w http.ResponseWriter, r *http.Request) {
	if s.raft.State() != raft.Leader {
		http.Error(w, "not the leader", http.StatusMisdirectedRequest)
		return
	}
	idx, err := s.verifier.readIndex(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusMisdirectedRequest)
		return
	}
	_, _ = io.WriteString(w, strconv.FormatUint(idx, 10))
}

// handleJoin adds a master as a voter (forwarded to the leader).
func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	m, err := decodeJoinRequest(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.raft.State() != raft.Leader {
		s.proxyToLeader(w, r, mustJSON(m))
		return
	}
	if err := s.addMaster(r.Context(), m); err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, errNameTaken) {
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	writeJSON(w, map[string]string{"status": "joined"})
}

func (s *Server) handleMembers(w http.ResponseWriter, r *http.Request) {
	ms, err := s.memberStatuses(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, ms)
}

func (s *Server) handleRemoveMember(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if s.raft.State() != raft.Leader {
		s.proxyToLeader(w, r, nil)
		return
	}
	if err := s.removeMaster(r.Context(), name); err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, errNoSuchMaster) {
			code = http.StatusNotFound
		} else if errors.Is(err, errLastMaster) {
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	writeJSON(w, map[string]string{"status": "removed"})
}

// proxyToLeader replays a request to the leader with this master's
// credentials and copies the answer back.
func (s *Server) proxyToLeader(w http.ResponseWriter, r *http.Request, body []byte) {
	ctx, cancel := withDefaultTimeout(r.Context())
	defer cancel()
	for {
		url, err := s.leaderAPI()
		if err == nil {
			var out []byte
			var code int
			out, code, err = s.peerCall(ctx, r.Method, url+r.URL.Path, body)
			if err == nil && code != http.StatusMisdirectedRequest {
				w.WriteHeader(code)
				_, _ = w.Write(out)
				return
			}
		}
		if err != nil && !errors.Is(err, errRetry) {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if s.pause(ctx) != nil {
			http.Error(w, "no leader available", http.StatusServiceUnavailable)
			return
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
