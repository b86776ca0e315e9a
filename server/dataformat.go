package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The data format of a master's Raft dir: which Raft entry types, Raft
// snapshot versions and sealed formats a release may have written there.
// A release records its format in <raft-dir>/format when it opens the dir
// (never lowering it), and refuses, with a message saying what to do, a
// dir a newer format wrote: a downgrade across a format is not supported
// (it would meet entries or snapshots it cannot read, at some later
// restart). Releases before this file existed are format 1; a release that
// adds an entry type or a snapshot version raises dataFormat.
//
//	1  before the file: entries v1, snapshots up to version 3
//	2  sealed entries (encryption at rest), snapshots version 4,
//	   encryption keys in the state
const dataFormat = 2

const dataFormatFile = "format"

type dataFormatRecord struct {
	Format int `json:"format"`
}

// checkDataFormat refuses a Raft dir of a newer format and records this
// release's format in it.
func checkDataFormat(dir string) error {
	path := filepath.Join(dir, dataFormatFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("data format: %w", err)
	default:
		var rec dataFormatRecord
		if err := json.Unmarshal(b, &rec); err != nil || rec.Format < 1 {
			return fmt.Errorf("data format: %s is damaged (%q): it should hold {\"format\":N}", path, b)
		}
		if rec.Format > dataFormat {
			return fmt.Errorf("%s was written by a newer Skiff release (data format %d; this release reads up to %d): "+
				"a downgrade across it is not supported. Run that release (or a newer one) again, or restore a "+
				"cluster snapshot taken before the upgrade into an empty data dir (docs/ha.md)", dir, rec.Format, dataFormat)
		}
		if rec.Format == dataFormat {
			return nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, _ = json.Marshal(dataFormatRecord{Format: dataFormat})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("data format: %w", err)
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("data format: %w", err)
	}
	return nil
}
