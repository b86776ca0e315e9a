package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"time"
)

// GossipMember mirrors gossip.Member.
type GossipMember struct {
	Name   string            `json:"name"`
	Addr   string            `json:"addr"`
	Tags   map[string]string `json:"tags"`
	Status string            `json:"status"`
}

// GossipMembers asks master m for the gossip members it sees.
func GossipMembers(m *Master, admin *http.Client) (map[string]GossipMember, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.URL()+"/internal/v1/gossip/members", nil)
	resp, err := admin.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("gossip members: %d %s", resp.StatusCode, b)
	}
	var list []GossipMember
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, err
	}
	out := map[string]GossipMember{}
	for _, x := range list {
		out[x.Name] = x
	}
	return out, nil
}

// Signal sends sig (SIGSTOP, SIGCONT) to the hollow node process.
func (h *HollowNodes) Signal(sig syscall.Signal) error { return h.proc.signal(sig) }

// SetIP changes the nodes' address for the next Start (a node back with
// a new address).
func (h *HollowNodes) SetIP(ip string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := 0; i+1 < len(h.Args); i++ {
		if h.Args[i] == "--bind-address" {
			h.Args[i+1] = ip
		}
	}
}
