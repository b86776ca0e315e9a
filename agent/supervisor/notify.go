package supervisor

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// NotifyReady tells systemd (Type=notify) that an unsupervised process
// (--supervise=false) is ready; nothing happens outside systemd.
func NotifyReady() { _, _ = daemon.SdNotify(false, daemon.SdNotifyReady) }

// Watchdog pings systemd's watchdog (WatchdogSec) for an unsupervised
// process until ctx ends; supervised, the parent pings it while its child
// answers.
func Watchdog(ctx context.Context) {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil || every <= 0 {
		return
	}
	go func() {
		t := time.NewTicker(every / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			}
		}
	}()
}
