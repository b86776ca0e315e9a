package apiserver

import "net/http"

// handleGet serves GET of one object (and of its status subresource, which
// returns the whole object as kube-apiserver does).
func (s *APIServer) handleGet(req *request) {
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
	s.writeObject(req, http.StatusOK, obj)
}
