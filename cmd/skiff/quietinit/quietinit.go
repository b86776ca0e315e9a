// Package quietinit keeps `skiff init` quiet: that re-execution of the
// binary becomes a container's process (its init, or an exec's), so what
// it writes to stderr is the container's output. Some dependencies log
// with the standard log package while their packages initialise (the
// VictoriaMetrics metrics package, linked in by the log store, reports
// unreadable PSI files), before main runs.
//
// Go initialises the packages of a program in import-path order among
// those whose imports are initialised, so this package, whose path sorts
// before every github.com path, silences the standard logger first. It
// is a module of its own (replaced by this directory in the main go.mod)
// only for that import path.
package quietinit

import (
	"io"
	"log"
	"os"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		log.SetOutput(io.Discard)
	}
}
