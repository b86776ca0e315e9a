package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/robfig/cron/v3"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/pki"
	"github.com/skiff-io/skiff/server/snapshot"
)

// Cluster snapshots (`skiff cluster snapshot`, --snapshot-schedule): files
// in the snapshot format (server/snapshot) under <data-dir>/snapshots (or
// --snapshot-dir) of every master. The master that takes one reads the
// state linearizably (it reflects every write acknowledged before), writes
// the file and copies it to every other master, so losing a master's disk
// loses no snapshot.

// DefaultSnapshotSchedule and DefaultSnapshotRetention are the flags'
// defaults: twice a day, five kept (k3s's defaults).
const (
	DefaultSnapshotSchedule  = "0 */12 * * *"
	DefaultSnapshotRetention = 5
	snapshotExt              = snapshot.Ext
)

var snapshotNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,200}$`)

func (c *Config) snapshotDir() string {
	if c.ClusterSnapshotDir != "" {
		return c.ClusterSnapshotDir
	}
	return filepath.Join(c.DataDir, "snapshots")
}

// SnapshotInfo is one row of `skiff cluster snapshot list`.
type SnapshotInfo struct {
	Name      string    `json:"name"`
	Index     uint64    `json:"index"`
	Created   time.Time `json:"created"`
	Master    string    `json:"master"`
	Scheduled bool      `json:"scheduled"`
	Objects   int       `json:"objects"`
	Size      int64     `json:"size"`
	// Masters hold a copy.
	Masters []string `json:"masters"`
	// Copies are the targets beyond the masters holding one
	// ("dir:/mnt/backup", "s3://bucket/folder").
	Copies []string `json:"copies,omitempty"`
}

// saveClusterSnapshot takes a snapshot here and copies it to the other
// masters.
func (s *Server) saveClusterSnapshot(ctx context.Context, scheduled bool) (*SnapshotInfo, error) {
	idx, err := s.readIndex(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.waitApplied(ctx, idx); err != nil {
		return nil, err
	}
	snap := s.fsm.Read()
	now := time.Now().UTC()
	kind := "on-demand"
	if scheduled {
		kind = "scheduled"
	}
	hdr := snapshot.Header{
		Name:    fmt.Sprintf("%s-%s-%d", kind, strings.ToLower(s.cfg.NodeName), now.Unix()),
		Cluster: pki.CAHash(s.ca.CertPEM), Index: snap.Index(), Created: now, Master: s.cfg.NodeName, Scheduled: scheduled,
	}
	snap.All(func(o *state.Object) bool {
		if o.Key.Resource != membersResource && !strings.HasPrefix(o.Key.Resource, "skiff.io/") {
			hdr.Objects++
		}
		return true
	})
	keys := snapshot.Keys{CACert: string(s.ca.CertPEM), CAKey: string(s.ca.KeyPEM), ServiceAccountKey: string(s.saKeyPEM),
		EncryptionKey: s.rootKey, Token: s.token}
	path, err := s.writeSnapshotFile(hdr.Name, func(w io.Writer) error {
		return snapshot.Write(w, hdr, s.secret, keys, func(w io.Writer) error { return s.fsm.WriteSnapshot(w, snap) })
	})
	if err != nil {
		return nil, err
	}
	info := &SnapshotInfo{Name: hdr.Name, Index: hdr.Index, Created: hdr.Created, Master: hdr.Master, Scheduled: scheduled,
		Objects: hdr.Objects, Masters: []string{s.cfg.NodeName}}
	if st, err := os.Stat(path); err == nil {
		info.Size = st.Size()
	}
	for _, peer := range s.otherMasters() {
		if err := s.copySnapshotTo(ctx, peer, path, hdr.Name); err != nil {
			s.log.Warn("snapshot not copied to a master", "snapshot", hdr.Name, "master", peer.Name, "err", err)
			continue
		}
		info.Masters = append(info.Masters, peer.Name)
	}
	info.Copies = s.copySnapshotToTargets(ctx, path, hdr.Name)
	s.log.Info("cluster snapshot saved", "snapshot", hdr.Name, "index", hdr.Index, "objects", hdr.Objects, "masters", info.Masters, "copies", info.Copies)
	return info, nil
}

// writeSnapshotFile writes name in the snapshot dir, whole or not at all.
func (s *Server) writeSnapshotFile(name string, write func(io.Writer) error) (string, error) {
	path, err := snapshot.WriteFile(s.cfg.snapshotDir(), name, write)
	if err != nil {
		return "", fmt.Errorf("snapshot %s: %w", name, err)
	}
	return path, nil
}

// otherMasters are the records of the other voters.
func (s *Server) otherMasters() []*Member {
	var out []*Member
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == s.cfg.NodeName || srv.Suffrage != raft.Voter {
			continue
		}
		if m, ok := s.lookupMember(string(srv.ID)); ok && m.APIURL != "" {
			out = append(out, m)
		}
	}
	return out
}

func (s *Server) copySnapshotTo(ctx context.Context, peer *Member, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, peer.APIURL+"/internal/v1/snapshots/files/"+url.PathEscape(name), f)
	if err != nil {
		return err
	}
	resp, err := s.peerClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// handleSnapshotPut stores a copy sent by another master.
func (s *Server) handleSnapshotPut(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !snapshotNameRE.MatchString(name) {
		http.Error(w, "bad snapshot name", http.StatusBadRequest)
		return
	}
	br := bufio.NewReaderSize(r.Body, 64<<10)
	hdr, line, err := snapshot.ReadHeader(br)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if hdr.Cluster != pki.CAHash(s.ca.CertPEM) || hdr.Name != name {
		http.Error(w, "snapshot of another cluster, or misnamed", http.StatusBadRequest)
		return
	}
	if _, err := s.writeSnapshotFile(name, func(w io.Writer) error {
		if _, err := w.Write(line); err != nil {
			return err
		}
		_, err := io.Copy(w, br)
		return err
	}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]string{"stored": name})
}

// localSnapshots lists the snapshot files of this master.
func (s *Server) localSnapshots() ([]SnapshotInfo, error) {
	ents, err := os.ReadDir(s.cfg.snapshotDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []SnapshotInfo
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), snapshotExt)
		if !ok || !e.Type().IsRegular() || !snapshotNameRE.MatchString(name) {
			continue
		}
		f, err := os.Open(filepath.Join(s.cfg.snapshotDir(), e.Name()))
		if err != nil {
			continue
		}
		hdr, _, herr := snapshot.ReadHeader(bufio.NewReaderSize(f, 64<<10))
		st, serr := f.Stat()
		f.Close()
		if herr != nil || serr != nil {
			s.log.Warn("unreadable snapshot file", "file", e.Name(), "err", errors.Join(herr, serr))
			continue
		}
		out = append(out, SnapshotInfo{Name: name, Index: hdr.Index, Created: hdr.Created, Master: hdr.Master,
			Scheduled: hdr.Scheduled, Objects: hdr.Objects, Size: st.Size(), Masters: []string{s.cfg.NodeName}})
	}
	return out, nil
}

// clusterSnapshots merges the lists of every master (local only: this one).
func (s *Server) clusterSnapshots(ctx context.Context, local bool) ([]SnapshotInfo, error) {
	mine, err := s.localSnapshots()
	if err != nil {
		return nil, err
	}
	byName := map[string]*SnapshotInfo{}
	for i := range mine {
		byName[mine[i].Name] = &mine[i]
	}
	if !local {
		for _, peer := range s.otherMasters() {
			b, code, err := s.peerCall(ctx, http.MethodGet, peer.APIURL+"/internal/v1/snapshots?local=1", nil)
			if err != nil || code != http.StatusOK {
				s.log.Warn("snapshot list of a master unavailable", "master", peer.Name, "code", code, "err", err)
				continue
			}
			var theirs []SnapshotInfo
			if err := json.Unmarshal(b, &theirs); err != nil {
				continue
			}
			for _, t := range theirs {
				if cur, ok := byName[t.Name]; ok {
					cur.Masters = append(cur.Masters, t.Masters...)
				} else {
					t := t
					byName[t.Name] = &t
				}
			}
		}
	}
	if !local {
		s.targetSnapshots(ctx, byName)
	}
	out := make([]SnapshotInfo, 0, len(byName))
	for _, v := range byName {
		sort.Strings(v.Masters)
		sort.Strings(v.Copies)
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Created.After(out[j].Created) || out[i].Created.Equal(out[j].Created) && out[i].Name < out[j].Name
	})
	return out, nil
}

func (s *Server) handleSnapshotList(w http.ResponseWriter, r *http.Request) {
	list, err := s.clusterSnapshots(r.Context(), r.URL.Query().Get("local") == "1")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, list)
}

func (s *Server) handleSnapshotSave(w http.ResponseWriter, r *http.Request) {
	info, err := s.saveClusterSnapshot(r.Context(), false)
	if err != nil {
		http.Error(w, "snapshot: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, info)
}

func (s *Server) handleSnapshotGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !snapshotNameRE.MatchString(name) {
		http.Error(w, "bad snapshot name", http.StatusBadRequest)
		return
	}
	f, err := os.Open(filepath.Join(s.cfg.snapshotDir(), name+snapshotExt))
	if err != nil {
		http.Error(w, fmt.Sprintf("snapshot %s is not on master %s", name, s.cfg.NodeName), http.StatusNotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = io.Copy(w, f)
}

// deleteSnapshot removes name here and, unless local, on every master.
func (s *Server) deleteSnapshot(ctx context.Context, name string, local bool) (int, error) {
	n := 0
	err := os.Remove(filepath.Join(s.cfg.snapshotDir(), name+snapshotExt))
	switch {
	case err == nil:
		n++
	case !errors.Is(err, os.ErrNotExist):
		return n, err
	}
	if !local {
		n += s.deleteFromTargets(ctx, name)
		for _, peer := range s.otherMasters() {
			b, code, err := s.peerCall(ctx, http.MethodDelete, peer.APIURL+"/internal/v1/snapshots/files/"+url.PathEscape(name)+"?local=1", nil)
			if err != nil || code != http.StatusOK {
				s.log.Warn("snapshot not deleted on a master", "snapshot", name, "master", peer.Name, "code", code, "err", err)
				continue
			}
			var res map[string]int
			if json.Unmarshal(b, &res) == nil {
				n += res["deleted"]
			}
		}
	}
	return n, nil
}

func (s *Server) handleSnapshotDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !snapshotNameRE.MatchString(name) {
		http.Error(w, "bad snapshot name", http.StatusBadRequest)
		return
	}
	n, err := s.deleteSnapshot(r.Context(), name, r.URL.Query().Get("local") == "1")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if n == 0 && r.URL.Query().Get("local") != "1" {
		http.Error(w, "no snapshot "+name, http.StatusNotFound)
		return
	}
	writeJSON(w, map[string]int{"deleted": n})
}

// snapshotScheduleLoop takes the scheduled snapshots on the leader and
// keeps the newest --snapshot-retention of them.
func (s *Server) snapshotScheduleLoop(ctx context.Context) {
	if s.cfg.ClusterSnapshotSchedule == "" {
		return
	}
	sched, err := cron.ParseStandard(s.cfg.ClusterSnapshotSchedule)
	if err != nil {
		s.log.Error("scheduled snapshots off: bad --snapshot-schedule", "schedule", s.cfg.ClusterSnapshotSchedule, "err", err)
		return
	}
	for {
		next := sched.Next(time.Now())
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		if _, err := s.saveClusterSnapshot(sctx, true); err != nil {
			s.log.Warn("scheduled snapshot failed", "err", err)
		} else {
			s.pruneSnapshots(sctx)
		}
		cancel()
	}
}

// pruneSnapshots deletes scheduled snapshots beyond the retention,
// oldest first, on every master.
func (s *Server) pruneSnapshots(ctx context.Context) {
	list, err := s.clusterSnapshots(ctx, false)
	if err != nil {
		return
	}
	keep := s.cfg.ClusterSnapshotRetention
	if keep <= 0 {
		keep = DefaultSnapshotRetention
	}
	n := 0
	for _, sn := range list { // newest first
		if !sn.Scheduled {
			continue
		}
		n++
		if n > keep {
			if _, err := s.deleteSnapshot(ctx, sn.Name, false); err != nil {
				s.log.Warn("pruning a snapshot", "snapshot", sn.Name, "err", err)
			}
		}
	}
}
