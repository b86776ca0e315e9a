// Command pause is the pause image's entrypoint for `make conformance`: it
// sleeps until SIGINT or SIGTERM and then exits 0, as registry.k8s.io/pause
// does (as PID 1 it also reaps the children it inherits). Skiff pods need no
// pause container; the e2e suite runs this image as an ordinary container.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
