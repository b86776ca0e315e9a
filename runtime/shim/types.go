// Package shim is the per-container process that sits between the runtime
// and a container: the skiff binary re-executed as `skiff shim <dir>` (an
// argv hook, like libcontainer's `init`, handled by
// runtime/libcontainer.InitIfRequested). The shim
//
//   - creates and starts the libcontainer container, so it is the parent of
//     the container's init and the one that reaps it;
//   - copies the container's stdout and stderr to a CRI-format log file
//     (timestamped lines, rotated by size) and to attached clients;
//   - records the exit status, time and OOM kills in exit.json, then
//     destroys the libcontainer container (its cgroup) and exits;
//   - lives in its own session, so containers outlive the agent: a
//     restarted agent finds the shim through state.json.
//
// Files in the container directory (dir):
//
//	shim.json    Config, written by the runtime before the shim starts
//	state.json   State, written by the shim once the container runs
//	exit.json    Exit, written by the shim when the container has exited
//	attach.sock  the attach socket (stdin, output, resize)
//	shim.log     the shim's own diagnostics
package shim

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer/configs"
)

// File names in the container directory.
const (
	ConfigFile = "shim.json"
	StateFile  = "state.json"
	ExitFile   = "exit.json"
	SocketFile = "attach.sock"
	LogFile    = "shim.log"
)

// Config tells a shim what to run.
type Config struct {
	// ID is the libcontainer container ID; Root the libcontainer state root.
	ID        string          `json:"id"`
	Root      string          `json:"root"`
	Container *configs.Config `json:"container"`
	Process   Process         `json:"process"`
	// LogPath is the CRI log file; rotated to LogPath.1 ... when it grows
	// past LogMaxSize, keeping LogMaxFiles files in all.
	LogPath     string `json:"logPath"`
	LogMaxSize  int64  `json:"logMaxSize"`
	LogMaxFiles int    `json:"logMaxFiles"`
}

// Process is the container's init process.
type Process struct {
	Args             []string `json:"args"`
	Env              []string `json:"env"`
	Cwd              string   `json:"cwd"`
	UID              int      `json:"uid"`
	GID              int      `json:"gid"`
	AdditionalGroups []int    `json:"additionalGroups,omitempty"`
	Tty              bool     `json:"tty,omitempty"`
	Stdin            bool     `json:"stdin,omitempty"`
	StdinOnce        bool     `json:"stdinOnce,omitempty"`
}

// State is written by a shim once its container runs.
type State struct {
	ShimPid int `json:"shimPid"`
	// ShimStartTime is the shim's start time in clock ticks since boot
	// (/proc/<pid>/stat field 22), to tell it from a later process that
	// reuses its PID.
	ShimStartTime uint64    `json:"shimStartTime"`
	InitPid       int       `json:"initPid"`
	StartedAt     time.Time `json:"startedAt"`
}

// Exit is written by a shim when its container has exited.
type Exit struct {
	ExitCode   int       `json:"exitCode"`
	Signal     int       `json:"signal,omitempty"`
	FinishedAt time.Time `json:"finishedAt"`
	OOMKilled  bool      `json:"oomKilled,omitempty"`
	// Reason is a CRI container status reason: Completed, Error,
	// OOMKilled, or StartError when the container never ran.
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
}

// ReadState reads state.json from dir; a missing file is (nil, nil).
func ReadState(dir string) (*State, error) {
	var s State
	ok, err := readJSON(filepath.Join(dir, StateFile), &s)
	if !ok {
		return nil, err
	}
	return &s, err
}

// ReadExit reads exit.json from dir; a missing file is (nil, nil).
func ReadExit(dir string) (*Exit, error) {
	var e Exit
	ok, err := readJSON(filepath.Join(dir, ExitFile), &e)
	if !ok {
		return nil, err
	}
	return &e, err
}

// WriteExit records an exit for a container whose shim cannot (it never
// started, or died).
func WriteExit(dir string, e *Exit) error {
	return writeJSON(filepath.Join(dir, ExitFile), e)
}

// WriteConfig writes shim.json.
func WriteConfig(dir string, c *Config) error {
	return writeJSON(filepath.Join(dir, ConfigFile), c)
}

// ReadConfig reads shim.json.
func ReadConfig(dir string) (*Config, error) {
	var c Config
	ok, err := readJSON(filepath.Join(dir, ConfigFile), &c)
	if !ok && err == nil {
		err = os.ErrNotExist
	}
	return &c, err
}

func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(b, v)
}

// writeJSON writes through a temporary file and a rename, so readers never
// see half a file. No fsync: these files describe processes, which a power
// loss ends anyway.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
