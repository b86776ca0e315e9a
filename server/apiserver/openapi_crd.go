package apiserver

import "sync"

// openAPIState holds the OpenAPI documents of one generation of the
// registry's custom resources: a CRD change makes the next request build
// them again.
type openAPIState struct {
	mu   sync.Mutex
	gen  uint64
	docs *openAPIDocs
}

// openAPICurrent returns the documents of the current custom resources
// (built by the caller's once when new).
func (s *APIServer) openAPICurrent() *openAPIDocs {
	gen := s.reg.CustomGeneration()
	st := &s.openapi
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.docs == nil || st.gen != gen {
		st.docs, st.gen = &openAPIDocs{}, gen
	}
	return st.docs
}
