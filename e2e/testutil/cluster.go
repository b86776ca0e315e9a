package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Cluster is a set of masters started by StartCluster.
type Cluster struct {
	t       TB
	Masters []*Master
	// Admin is an HTTP client with the first master's admin credentials;
	// it works against every master (they share the CA).
	Admin *http.Client
}

// StartCluster starts n masters: the first bootstraps, the rest join it.
// It returns when every master is ready and a voter.
func StartCluster(t TB, n int, args ...string) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	first := NewMaster(t, MasterOptions{Name: "m1", Args: args})
	first.Start()
	first.WaitReady(30 * time.Second)
	c.Masters = append(c.Masters, first)
	c.Admin = first.HTTPClient()
	for i := 2; i <= n; i++ {
		m := NewMaster(t, MasterOptions{Name: fmt.Sprintf("m%d", i), Join: first.URL(), Token: first.Token(), Args: args})
		m.Start()
		c.Masters = append(c.Masters, m)
	}
	for _, m := range c.Masters {
		m.WaitReady(60 * time.Second)
	}
	WaitFor(t, 60*time.Second, fmt.Sprintf("%d voters", n), func() error {
		ms, err := c.Members(first)
		if err != nil {
			return err
		}
		if len(ms) != n {
			return fmt.Errorf("%d members: %+v", len(ms), ms)
		}
		for _, m := range ms {
			if m.Suffrage != "voter" || m.State != "ready" {
				return fmt.Errorf("member not a ready voter: %+v", m)
			}
		}
		return nil
	})
	return c
}

// MemberRow mirrors server.MemberStatus.
type MemberRow struct {
	Name, RaftAddress, APIURL, Role, Suffrage, State, Detail string
}

// Members asks master m for the member list.
func (c *Cluster) Members(m *Master) ([]MemberRow, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.URL()+"/internal/v1/members", nil)
	resp, err := c.Admin.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("members: %d %s", resp.StatusCode, b)
	}
	var rows []MemberRow
	if err := json.Unmarshal(b, &rows); err != nil {
		return nil, err
	}
	return rows, nil
}

// Leader returns the master that the running masters agree leads.
func (c *Cluster) Leader(timeout time.Duration) *Master {
	c.t.Helper()
	var leader *Master
	WaitFor(c.t, timeout, "a leader", func() error {
		for _, m := range c.Masters {
			if !m.Running() {
				continue
			}
			rows, err := c.Members(m)
			if err != nil {
				continue
			}
			for _, r := range rows {
				if r.Role != "leader" {
					continue
				}
				for _, cand := range c.Masters {
					if cand.Name == r.Name && cand.Running() {
						leader = cand
						return nil
					}
				}
			}
		}
		return fmt.Errorf("no running leader")
	})
	return leader
}

// Running returns the running masters.
func (c *Cluster) Running() []*Master {
	var out []*Master
	for _, m := range c.Masters {
		if m.Running() {
			out = append(out, m)
		}
	}
	return out
}

// ClusterOf makes a Cluster of masters started by the caller (the first's
// admin credentials work for all).
func ClusterOf(t TB, masters ...*Master) *Cluster {
	return &Cluster{t: t, Masters: masters, Admin: masters[0].HTTPClient()}
}

// WaitReadyVoters waits until master via lists exactly n members, all
// ready voters.
func (c *Cluster) WaitReadyVoters(via *Master, n int, timeout time.Duration, what string) {
	c.t.Helper()
	WaitFor(c.t, timeout, what, func() error {
		rows, err := c.Members(via)
		if err != nil {
			return err
		}
		ready := 0
		for _, r := range rows {
			if r.Suffrage == "voter" && r.State == "ready" {
				ready++
			}
		}
		if ready != n || len(rows) != n {
			return fmt.Errorf("members: %+v", rows)
		}
		return nil
	})
}
