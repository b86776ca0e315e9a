// Package auditlog is a master's audit log in Kubernetes' format: the
// audit policy (audit.k8s.io/v1 Policy: a file, or the built-in default)
// and the log backend writing audit.k8s.io/v1 Event JSON lines to a
// rotated file, with kube-apiserver's own code (k8s.io/apiserver's policy
// evaluator, log and buffered backends; lumberjack for rotation). The API
// server (server/apiserver/audit.go) makes the events.
package auditlog

import (
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"gopkg.in/natefinch/lumberjack.v2"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/plugin/pkg/audit/buffered"
	pluginlog "k8s.io/apiserver/plugin/pkg/audit/log"
)

// Modes of writing, kube-apiserver's --audit-log-mode values.
const (
	// ModeBatch queues events (a bounded buffer) for one writer
	// goroutine: requests never wait for the disk; when the queue is
	// full, events are dropped and counted in the log.
	ModeBatch = "batch"
	// ModeBlocking writes each event before the request goes on: no
	// event is lost, and a slow disk slows the API.
	ModeBlocking = "blocking"
)

// Defaults of the skiff server flags.
const (
	DefaultMaxSize    = 100 // megabytes before the file is rotated
	DefaultMaxBackups = 5   // rotated files kept
	DefaultMaxAge     = 30  // days a rotated file is kept
	DefaultBufferSize = 10000
)

// DefaultPolicy is the built-in audit policy (default-policy.yaml): who
// changed what, at Request level; Secrets, ConfigMaps and tokens at
// Metadata only, never their bodies; reads at Metadata; heartbeats,
// health and discovery not at all.
//
//go:embed default-policy.yaml
var DefaultPolicy []byte

// Options configure the audit log (the --audit-* flags of skiff server).
type Options struct {
	// Path is the log file, "-" for standard output; "" disables the
	// audit log.
	Path string
	// PolicyFile is an audit.k8s.io/v1 Policy; "" is DefaultPolicy.
	PolicyFile string
	// MaxAge is the days a rotated file is kept, MaxBackups the rotated
	// files kept (0: no limit for either), MaxSize the megabytes of a
	// file before it is rotated (0: 100). Compress gzips rotated files.
	MaxAge     int
	MaxBackups int
	MaxSize    int
	Compress   bool
	// Mode is ModeBatch (if "") or ModeBlocking; BufferSize is the
	// events queued in batch mode (DefaultBufferSize if 0).
	BufferSize int
	Mode       string
}

// Log is an open audit log: the policy and the sink of events.
type Log struct {
	policy  audit.PolicyRuleEvaluator
	backend audit.Backend
	closer  io.Closer
	stop    chan struct{}
	once    sync.Once
	err     error
}

// Open loads the policy and opens the file. With an empty Path it returns
// nil and no error: auditing is off.
func Open(o Options, logger *slog.Logger) (*Log, error) {
	if o.Path == "" {
		return nil, nil
	}
	if logger == nil {
		logger = slog.Default()
	}
	p, err := LoadPolicy(o.PolicyFile)
	if err != nil {
		return nil, err
	}
	if m := backendMode(o.Mode); m != ModeBatch && m != ModeBlocking {
		return nil, fmt.Errorf("audit log mode %q: must be %q or %q", o.Mode, ModeBatch, ModeBlocking)
	}
	var (
		w      io.Writer = os.Stdout
		closer io.Closer
	)
	if o.Path != "-" {
		if err := ensureFile(o.Path); err != nil {
			return nil, err
		}
		lj := &lumberjack.Logger{Filename: o.Path, MaxAge: o.MaxAge, MaxBackups: o.MaxBackups, MaxSize: o.MaxSize, Compress: o.Compress}
		w, closer = lj, lj
	}
	l, err := newLog(p, o, w, closer)
	if err != nil {
		return nil, err
	}
	policyName := o.PolicyFile
	if policyName == "" {
		policyName = "built-in"
	}
	logger.Info("audit log opened", "component", "audit", "path", o.Path, "policy", policyName, "mode", backendMode(o.Mode))
	return l, nil
}

// newLog starts the backend of mode o.Mode writing events to w.
func newLog(p *auditinternal.Policy, o Options, w io.Writer, closer io.Closer) (*Log, error) {
	backend := pluginlog.NewBackend(w, pluginlog.FormatJson, auditv1.SchemeGroupVersion)
	if backendMode(o.Mode) == ModeBatch {
		size := o.BufferSize
		if size <= 0 {
			size = DefaultBufferSize
		}
		// kube-apiserver's batch settings for the log backend: one event
		// per write, from a queue of size events.
		backend = buffered.NewBackend(backend, buffered.BatchConfig{BufferSize: size, MaxBatchSize: 1})
	}
	l := &Log{
		policy:  policy.NewPolicyRuleEvaluator(p),
		backend: backend,
		closer:  closer,
		stop:    make(chan struct{}),
	}
	// The writer runs from now on, so that Shutdown may always be called.
	if err := backend.Run(l.stop); err != nil {
		if closer != nil {
			_ = closer.Close()
		}
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return l, nil
}

func backendMode(m string) string {
	if m == "" {
		return ModeBatch
	}
	return m
}

// LoadPolicy reads and checks an audit policy file; "" is DefaultPolicy.
func LoadPolicy(path string) (*auditinternal.Policy, error) {
	if path == "" {
		p, err := policy.LoadPolicyFromBytes(DefaultPolicy)
		if err != nil {
			return nil, fmt.Errorf("built-in audit policy: %w", err)
		}
		return p, nil
	}
	p, err := policy.LoadPolicyFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit policy: %w", err)
	}
	return p, nil
}

// ensureFile makes the log's directory (0700) and the file (0600), so
// that lumberjack appends to a file only its owner reads; rotated files
// keep the mode.
func ensureFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("audit log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// Policy returns the policy that picks each request's level.
func (l *Log) Policy() audit.PolicyRuleEvaluator { return l.policy }

// Sink returns what receives the events.
func (l *Log) Sink() audit.Sink { return l.backend }

// Shutdown writes the queued events and closes the file. Call it after
// the API has stopped serving; later calls return the first's result.
func (l *Log) Shutdown() error {
	l.once.Do(func() {
		close(l.stop)
		l.backend.Shutdown()
		if l.closer != nil {
			if err := l.closer.Close(); err != nil {
				l.err = fmt.Errorf("audit log: %w", err)
			}
		}
	})
	return l.err
}
