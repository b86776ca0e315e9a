package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/addons"
	"github.com/skiff-io/skiff/server/controller"
)

// The addon manager (docs/addons.md). Every master scans its
// <data-dir>/manifests/ and publishes the list of its files (names,
// checksums, modification times: never their content, which may hold
// Secrets) in one record per master through Raft. The leader reads the
// records, fetches the contents from the masters that hold them over the
// masters' mutual-TLS endpoint, and applies them (server/addons).

// addonsResource holds one record per master: its manifest files. It is
// internal: the Kubernetes API does not serve it.
const addonsResource = "skiff.io/addons"

const (
	// addonScanInterval is how often a master reads its manifests dir.
	addonScanInterval = 3 * time.Second
	// addonResync: the leader applies every manifest again this often
	// (edits in the API are reverted), and lists the cluster for objects
	// to delete every addonPruneInterval (and whenever a file changes).
	addonResync        = 10 * time.Second
	addonPruneInterval = time.Minute
	// addonUser is the identity the leader applies manifests as.
	addonUser = "system:skiff:addon-manager"
	// addonChecksumHeader carries the checksum of a served manifest.
	addonChecksumHeader = "X-Skiff-Addon-Sha256"
)

// addonRecord is a master's published manifests.
type addonRecord struct {
	Master string        `json:"master"`
	Files  []addons.File `json:"files"`
}

func addonKey(master string) state.Key { return state.Key{Resource: addonsResource, Name: master} }

// manifestsDir is the directory of auto-deployed manifests.
func (c *Config) manifestsDir() string { return filepath.Join(c.DataDir, "manifests") }

// addonState is a master's part of the addon manager: the files of its
// last scan (served to the leader) and, on the leader, the manager.
type addonState struct {
	mu    sync.Mutex
	local map[string]addons.ScannedFile
	mgr   *addons.Manager
}

func (a *addonState) file(name string) (addons.ScannedFile, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, ok := a.local[name]
	return f, ok
}

func (a *addonState) manager() *addons.Manager {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mgr
}

func (a *addonState) setManager(m *addons.Manager) {
	a.mu.Lock()
	a.mgr = m
	a.mu.Unlock()
}

// addonScanLoop scans the manifests dir at start and every
// addonScanInterval, and publishes what changed.
func (s *Server) addonScanLoop() {
	defer s.wg.Done()
	dir := s.cfg.manifestsDir()
	log := s.log.With("loop", "addon-scan")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		log.Error("manifests dir", "dir", dir, "err", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.shutdownCh
		cancel()
	}()
	lastErr := "not yet published" // logs the first outcome
	t := time.NewTicker(addonScanInterval)
	defer t.Stop()
	for {
		err := s.scanAndPublish(ctx, dir)
		if msg := errString(err); msg != lastErr && ctx.Err() == nil {
			if err != nil {
				log.Warn("manifests not published (retrying)", "dir", dir, "err", err)
			} else {
				log.Info("manifests published", "dir", dir)
			}
			lastErr = msg
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (s *Server) scanAndPublish(ctx context.Context, dir string) error {
	scanned, err := addons.Scan(dir)
	if err != nil {
		return err
	}
	rec := addonRecord{Master: s.cfg.NodeName, Files: []addons.File{}}
	local := make(map[string]addons.ScannedFile, len(scanned))
	for _, f := range scanned {
		rec.Files = append(rec.Files, f.File)
		local[f.Name] = f
	}
	s.addons.mu.Lock()
	s.addons.local = local
	s.addons.mu.Unlock()
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return s.putInternalRecord(ctx, addonKey(rec.Master), data)
}

// putInternalRecord creates or replaces an internal record through Raft
// (unless the local state holds it already).
func (s *Server) putInternalRecord(ctx context.Context, key state.Key, data []byte) error {
	for attempt := 0; attempt < 5; attempt++ {
		mut := fsm.Mutation{Op: fsm.OpCreate, Key: key, UID: uuid.NewString(), Object: data}
		if cur := s.fsm.Read().Get(key); cur != nil {
			if bytes.Equal(cur.Data, data) {
				return nil
			}
			mut = fsm.Mutation{Op: fsm.OpUpdate, Key: key, Object: data,
				Preconditions: &fsm.Preconditions{ResourceVersion: cur.ModifyIndex}}
		}
		entry, err := fsm.EncodeMutation(mut)
		if err != nil {
			return err
		}
		res, err := s.apply(ctx, entry)
		if err != nil {
			return err
		}
		if res.Err == nil {
			return nil
		}
		if res.Err.Reason != fsm.ReasonConflict && res.Err.Reason != fsm.ReasonAlreadyExists && res.Err.Reason != fsm.ReasonNotFound {
			return res.Err
		}
		if err := s.waitApplied(ctx, res.Index); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s: too many conflicting updates", key)
}

// pruneAddonRecords deletes the records of masters that have been out of
// the Raft configuration for addonPruneInterval (removed masters; the
// grace covers a master publishing while it joins). missing remembers
// when each was first seen out.
func (s *Server) pruneAddonRecords(ctx context.Context, missing map[string]time.Time) error {
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("raft configuration: %w", err)
	}
	in := map[string]bool{}
	for _, srv := range cf.Configuration().Servers {
		in[string(srv.ID)] = true
	}
	var stale []string
	out := map[string]bool{}
	s.fsm.Read().List(addonsResource, "", "", func(o *state.Object) bool {
		if in[o.Key.Name] {
			return true
		}
		out[o.Key.Name] = true
		if since, ok := missing[o.Key.Name]; !ok {
			missing[o.Key.Name] = time.Now()
		} else if time.Since(since) >= addonPruneInterval {
			stale = append(stale, o.Key.Name)
		}
		return true
	})
	for name := range missing {
		if !out[name] {
			delete(missing, name)
		}
	}
	for _, name := range stale {
		entry, err := fsm.EncodeMutation(fsm.Mutation{Op: fsm.OpDelete, Key: addonKey(name)})
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
		s.log.Info("deleted the manifests record of a removed master", "master", name)
		delete(missing, name)
	}
	return nil
}

// addonSources reads the records of the masters in the Raft
// configuration (a removed master's files no longer count).
func (s *Server) addonSources() ([]addons.Source, error) {
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	in := map[string]bool{}
	for _, srv := range cf.Configuration().Servers {
		in[string(srv.ID)] = true
	}
	var out []addons.Source
	var bad error
	s.fsm.Read().List(addonsResource, "", "", func(o *state.Object) bool {
		if !in[o.Key.Name] {
			return true
		}
		var rec addonRecord
		if err := json.Unmarshal(o.Data, &rec); err != nil {
			bad = fmt.Errorf("addon record of %s: %w", o.Key.Name, err)
			return false
		}
		out = append(out, addons.Source{Master: o.Key.Name, Files: rec.Files})
		return true
	})
	return out, bad
}

// fetchManifest returns a published file's content: this master's from its
// last scan, another's over the masters' mutual-TLS endpoint.
func (s *Server) fetchManifest(ctx context.Context, master string, f addons.File) ([]byte, error) {
	var content []byte
	if master == s.cfg.NodeName {
		sf, ok := s.addons.file(f.Name)
		if !ok {
			return nil, errors.New("no longer in the manifests dir")
		}
		content = sf.Content
	} else {
		m, ok := s.lookupMember(master)
		if !ok {
			return nil, fmt.Errorf("no record of master %s", master)
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.APIURL+"/internal/v1/addons/manifests/"+url.PathEscape(f.Name), nil)
		if err != nil {
			return nil, err
		}
		resp, err := s.peerClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		content, err = io.ReadAll(io.LimitReader(resp.Body, addons.MaxFileSize+1))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(content))
		}
	}
	if sum := addons.Checksum(content); sum != f.SHA256 {
		return nil, fmt.Errorf("changed since it was published (checksum %.12s, published %.12s)", sum, f.SHA256)
	}
	return content, nil
}

// handleAddonManifest serves one of this master's manifests to the leader.
func (s *Server) handleAddonManifest(w http.ResponseWriter, r *http.Request) {
	f, ok := s.addons.file(r.PathValue("name"))
	if !ok || f.Skipped || f.Error != "" {
		http.Error(w, "no such manifest", http.StatusNotFound)
		return
	}
	w.Header().Set(addonChecksumHeader, f.SHA256)
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(f.Content)
}

// handleAddons answers `skiff cluster addons`: the leader's status of
// every published manifest.
func (s *Server) handleAddons(w http.ResponseWriter, r *http.Request) {
	if s.raft.State() != raft.Leader {
		s.proxyToLeader(w, r, nil)
		return
	}
	rows, err := s.addonStatus()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, rows)
}

// addonStatus is the manager's status, with a Pending row for each file
// published since its last pass.
func (s *Server) addonStatus() ([]addons.Status, error) {
	sources, err := s.addonSources()
	if err != nil {
		return nil, err
	}
	var rows []addons.Status
	seen := map[string]bool{}
	if mgr := s.addons.manager(); mgr != nil {
		rows = mgr.Status()
		for _, st := range rows {
			seen[st.Addon] = true
		}
	}
	for _, src := range sources {
		for _, f := range src.Files {
			if seen[f.Addon()] {
				continue
			}
			seen[f.Addon()] = true
			rows = append(rows, addons.Status{Addon: f.Addon(), File: f.Name, Masters: []string{src.Master},
				State: addons.StatePending, SHA256: f.SHA256})
		}
	}
	return rows, nil
}

// startAddonManager runs the addon manager on the leader until ctx ends.
func (s *Server) startAddonManager(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.addonManagerLoop(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("addon manager stopped", "err", err)
		}
	}()
}

func (s *Server) addonManagerLoop(ctx context.Context) error {
	cfg, err := s.loopbackConfig(addonUser)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	log := s.cfg.Logger.With("node", s.cfg.NodeName)
	events := controller.NewEvents(cs, log)
	defer events.Shutdown()
	mgr := addons.NewManager(addons.Config{
		Applier:   &addons.Applier{Client: dyn, Mapper: mapper},
		Inventory: addons.APIInventory{Discovery: disc, Client: dyn},
		Fetch:     s.fetchManifest,
		Events:    events.Recorder("addon-manager"),
		Logger:    log,
	})
	s.addons.setManager(mgr)
	defer s.addons.setManager(nil)

	var lastSig string
	var lastPass, lastPrune time.Time
	missing := map[string]time.Time{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastErr string
	for {
		sources, err := s.addonSources()
		if msg := errString(err); msg != lastErr {
			if err != nil {
				// No pass: a master's files unknown would be deleted.
				s.log.Error("addon records unreadable: no addon pass", "err", err)
			}
			lastErr = msg
		}
		if err == nil {
			sig := string(mustJSON(sources))
			changed := sig != lastSig
			prune := changed || time.Since(lastPrune) >= addonPruneInterval
			if changed || time.Since(lastPass) >= addonResync {
				if prune {
					mapper.Reset() // kinds served now (custom resources, later)
				}
				if err := mgr.Sync(ctx, sources, prune); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					s.log.Warn("addon pass failed: retrying in 5s", "err", err)
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(5 * time.Second):
					}
				} else {
					lastSig, lastPass = sig, time.Now()
					if prune {
						lastPrune = lastPass
						if err := s.pruneAddonRecords(ctx, missing); err != nil && ctx.Err() == nil {
							s.log.Warn("prune manifests records", "err", err)
						}
					}
				}
				mgr.Forget(sources)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// addonMetrics are the addon manager's metrics at /metrics: this master's
// manifest files, and (on the leader) the manifests by status.
type addonMetrics struct{ s *Server }

var (
	addonManifestsDesc = prometheus.NewDesc("skiff_addon_manifests",
		"Manifests of the masters' manifests dirs by status (Applied, Failed, Unavailable, Skipped, Pending), as the leader's addon manager last found them; only the leader reports them.",
		[]string{"status"}, nil)
	addonLocalDesc = prometheus.NewDesc("skiff_addon_local_manifest_files",
		"Manifest files in this master's <data-dir>/manifests/ at its last scan.", nil, nil)
)

func (m addonMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- addonManifestsDesc
	ch <- addonLocalDesc
}

func (m addonMetrics) Collect(ch chan<- prometheus.Metric) {
	m.s.addons.mu.Lock()
	local := len(m.s.addons.local)
	m.s.addons.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(addonLocalDesc, prometheus.GaugeValue, float64(local))
	if m.s.raft.State() != raft.Leader || m.s.addons.manager() == nil {
		return
	}
	rows, err := m.s.addonStatus()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(addonManifestsDesc, err)
		return
	}
	counts := map[string]int{addons.StateApplied: 0, addons.StateFailed: 0, addons.StateUnavailable: 0, addons.StateSkipped: 0, addons.StatePending: 0}
	for _, r := range rows {
		counts[r.State]++
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(addonManifestsDesc, prometheus.GaugeValue, float64(n), state)
	}
}
