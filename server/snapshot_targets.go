package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/skiff-io/skiff/server/snapshot"
)

// Copies of cluster snapshots beyond the masters' disks: the master that
// takes a snapshot (the leader, on schedule, or the one asked) copies it
// to every other master and also to --snapshot-copy-dir and the
// --snapshot-s3-* bucket. Listing, pruning and deleting cover the copies;
// --cluster-reset-restore NAME finds a snapshot there when no file of that
// name is at hand.

// snapshotTargets builds the configured targets.
func (c *Config) snapshotTargets() ([]snapshot.Target, error) {
	var out []snapshot.Target
	if c.SnapshotCopyDir != "" {
		if !filepath.IsAbs(c.SnapshotCopyDir) {
			return nil, fmt.Errorf("--snapshot-copy-dir %q: give an absolute path", c.SnapshotCopyDir)
		}
		out = append(out, snapshot.DirTarget{Dir: c.SnapshotCopyDir})
	}
	if c.SnapshotS3 != nil {
		t, err := snapshot.NewS3Target(*c.SnapshotS3)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// checkSnapshotTargets logs, at start, a target that cannot be reached
// (a missing bucket, wrong credentials), so the operator learns it before
// the first scheduled snapshot.
func (s *Server) checkSnapshotTargets(ctx context.Context) {
	for _, t := range s.snapshotTargets {
		c, ok := t.(interface{ Check(context.Context) error })
		if !ok {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := c.Check(cctx); err != nil {
			s.log.Error("snapshot copies cannot be stored", "target", t.String(), "err", err)
		} else {
			s.log.Info("snapshot copies go to", "target", t.String())
		}
		cancel()
	}
}

// copySnapshotToTargets copies the file at path to every target and
// returns the names of those that took it.
func (s *Server) copySnapshotToTargets(ctx context.Context, path, name string) []string {
	var done []string
	for _, t := range s.snapshotTargets {
		err := func() error {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			return t.Put(ctx, name, f, st.Size())
		}()
		if err != nil {
			s.log.Warn("snapshot not copied", "snapshot", name, "target", t.String(), "err", err)
			continue
		}
		done = append(done, t.String())
	}
	return done
}

// targetSnapshots adds the targets' copies to byName: a copy of a
// snapshot the masters hold is named in its Copies; one only a target
// holds gets a row of its own, read from its header.
func (s *Server) targetSnapshots(ctx context.Context, byName map[string]*SnapshotInfo) {
	for _, t := range s.snapshotTargets {
		names, err := t.List(ctx)
		if err != nil {
			s.log.Warn("snapshot copies not listed", "target", t.String(), "err", err)
			continue
		}
		for _, name := range names {
			if !snapshotNameRE.MatchString(name) {
				continue
			}
			if cur, ok := byName[name]; ok {
				cur.Copies = append(cur.Copies, t.String())
				continue
			}
			info, err := targetSnapshotInfo(ctx, t, name)
			if err != nil {
				s.log.Warn("unreadable snapshot copy", "target", t.String(), "snapshot", name, "err", err)
				continue
			}
			byName[name] = info
		}
	}
}

func targetSnapshotInfo(ctx context.Context, t snapshot.Target, name string) (*SnapshotInfo, error) {
	rc, err := t.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	hdr, _, err := snapshot.ReadHeader(bufio.NewReaderSize(rc, 64<<10))
	if err != nil {
		return nil, err
	}
	if hdr.Name != name {
		return nil, fmt.Errorf("the file holds snapshot %s", hdr.Name)
	}
	return &SnapshotInfo{Name: name, Index: hdr.Index, Created: hdr.Created, Master: hdr.Master, Scheduled: hdr.Scheduled,
		Objects: hdr.Objects, Copies: []string{t.String()}}, nil
}

// deleteFromTargets removes name from every target; it returns how many
// held it.
func (s *Server) deleteFromTargets(ctx context.Context, name string) int {
	n := 0
	for _, t := range s.snapshotTargets {
		rc, err := t.Open(ctx, name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err == nil {
			rc.Close()
		}
		if err := t.Delete(ctx, name); err != nil {
			s.log.Warn("snapshot copy not deleted", "target", t.String(), "snapshot", name, "err", err)
			continue
		}
		n++
	}
	return n
}

// fetchSnapshotCopy copies snapshot name from the first target that
// holds it into dir (through DirTarget's synced temporary file), for a
// restore; it returns the file's path.
func fetchSnapshotCopy(ctx context.Context, targets []snapshot.Target, name, dir string) (string, error) {
	if len(targets) == 0 {
		return "", fmt.Errorf("%s: no such file or snapshot (give --snapshot-copy-dir or --snapshot-s3-* to restore a copy kept there)", name)
	}
	var errs []error
	for _, t := range targets {
		rc, err := t.Open(ctx, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		local := snapshot.DirTarget{Dir: dir}
		err = local.Put(ctx, name, rc, -1)
		rc.Close()
		if err != nil {
			return "", fmt.Errorf("fetch %s from %s: %w", name, t, err)
		}
		return filepath.Join(dir, name+snapshotExt), nil
	}
	return "", fmt.Errorf("snapshot %s is in none of the copies: %w", name, errors.Join(errs...))
}
