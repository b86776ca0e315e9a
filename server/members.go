package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
)

// membersResource holds one record per master (its Raft and API addresses)
// in the replicated state, so that any master can find the leader's API.
// It is internal: the Kubernetes API does not serve it.
const membersResource = "skiff.io/masters"

// Member is a master's record.
type Member struct {
	Name        string `json:"name"`
	RaftAddress string `json:"raftAddress"`
	APIURL      string `json:"apiURL"`
	GossipAddr  string `json:"gossipAddr,omitempty"`
	// Witness: a voter that serves no API (`skiff witness`).
	Witness bool `json:"witness,omitempty"`
}

func memberKey(name string) state.Key { return state.Key{Resource: membersResource, Name: name} }

// MemberStatus is one row of `skiff cluster members`.
type MemberStatus struct {
	Name        string `json:"name"`
	RaftAddress string `json:"raftAddress"`
	APIURL      string `json:"apiURL,omitempty"`
	Role        string `json:"role"`     // leader, follower
	Suffrage    string `json:"suffrage"` // voter, nonvoter
	State       string `json:"state"`    // ready, not-ready, corrupt, unreachable
	// Detail explains a state other than ready.
	Detail string `json:"detail,omitempty"`
	// LastContactSeconds is the time since the master last heard from the
	// leader (0 on the leader), as it reported it in its /readyz answer.
	LastContactSeconds *float64 `json:"lastContactSeconds,omitempty"`
}

// lookupMember reads a master's record from the local state.
func (s *Server) lookupMember(name string) (*Member, bool) {
	o := s.fsm.Read().Get(memberKey(name))
	if o == nil {
		return nil, false
	}
	var m Member
	if err := json.Unmarshal(o.Data, &m); err != nil {
		s.log.Error("undecodable member record", "name", name, "err", err)
		return nil, false
	}
	return &m, true
}

// putMember creates or replaces a master's record through Raft.
func (s *Server) putMember(ctx context.Context, m Member) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.putInternalRecord(ctx, memberKey(m.Name), data)
}

// deleteMember removes a master's record.
func (s *Server) deleteMember(ctx context.Context, name string) error {
	entry, err := fsm.EncodeMutation(fsm.Mutation{Op: fsm.OpDelete, Key: memberKey(name)})
	if err != nil {
		return err
	}
	res, err := s.apply(ctx, entry)
	if err != nil {
		return err
	}
	if res.Err != nil && res.Err.Reason != fsm.ReasonNotFound {
		return res.Err
	}
	return nil
}

// memberStatuses lists the Raft configuration with each master's record and
// readiness, probed over the masters' mutual-TLS client.
func (s *Server) memberStatuses(ctx context.Context) ([]MemberStatus, error) {
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	_, leaderID := s.raft.LeaderWithID()
	servers := cf.Configuration().Servers
	out := make([]MemberStatus, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		ms := MemberStatus{Name: string(srv.ID), RaftAddress: string(srv.Address), Role: "follower", Suffrage: "voter"}
		if srv.ID == leaderID {
			ms.Role = "leader"
		}
		if srv.Suffrage != raft.Voter {
			ms.Suffrage = "nonvoter"
		}
		if m, ok := s.lookupMember(string(srv.ID)); ok {
			ms.APIURL = m.APIURL
			if m.Witness && ms.Role != "leader" {
				ms.Role = "witness"
			}
		}
		out[i] = ms
		wg.Add(1)
		go func(ms *MemberStatus) {
			defer wg.Done()
			ms.State, ms.Detail, ms.LastContactSeconds = s.probeMember(ctx, ms.APIURL)
		}(&out[i])
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// stateHeader on a /readyz answer names a state worse than not ready.
const stateHeader = "X-Skiff-State"

// lastContactHeader on a /readyz answer to a client with a certificate
// (the masters' probes) carries the master's seconds since it last heard
// from the leader.
const lastContactHeader = "X-Skiff-Raft-Last-Contact"

func (s *Server) probeMember(ctx context.Context, apiURL string) (string, string, *float64) {
	if apiURL == "" {
		return "unknown", "no member record yet", nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL+"/readyz", nil)
	if err != nil {
		return "unreachable", err.Error(), nil
	}
	resp, err := s.peerClient.Do(req)
	if err != nil {
		return "unreachable", err.Error(), nil
	}
	defer resp.Body.Close()
	var last *float64
	if v, err := strconv.ParseFloat(resp.Header.Get(lastContactHeader), 64); err == nil {
		last = &v
	}
	if resp.StatusCode != http.StatusOK {
		var b [256]byte
		n, _ := resp.Body.Read(b[:])
		if resp.Header.Get(stateHeader) == "corrupt" {
			return "corrupt", string(b[:n]), last
		}
		return "not-ready", string(b[:n]), last
	}
	return "ready", "", last
}
