package supervisor

import (
	"fmt"
	"strings"
)

// Init systems `skiff install` writes for.
const (
	InitSystemd = "systemd"
	InitOpenRC  = "openrc"
	InitSysV    = "sysv"
)

// Service describes the service `skiff install` writes: role is "server"
// or "agent", Bin the binary's path, Args the flags given after the role.
type Service struct {
	Role string
	Bin  string
	Args []string
	// WatchdogSec is systemd's WatchdogSec (the supervisor pings while its
	// child answers).
	WatchdogSec int
}

// Name is the service's name: skiff-server or skiff-agent.
func (s Service) Name() string { return "skiff-" + s.Role }

// SystemdUnit renders the unit: Type=notify (the supervisor says READY=1
// once its child is ready), the watchdog, KillMode=process (stopping or
// restarting the service never kills containers: they live in the
// service's cgroup under their shims), Delegate=yes for the containers'
// cgroups, no limits that would bind the containers.
func (s Service) SystemdUnit() string {
	argv := append([]string{s.Bin, s.Role}, s.Args...)
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = systemdQuote(a)
	}
	return fmt.Sprintf(`# Written by skiff install (docs/install.md).
[Unit]
Description=Skiff %[1]s
Documentation=https://github.com/skiff-io/skiff/blob/main/docs/install.md
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart=%[2]s
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
TimeoutStopSec=60s
Restart=always
RestartSec=5s
WatchdogSec=%[3]ds

[Install]
WantedBy=multi-user.target
`, s.Role, strings.Join(q, " "), s.watchdog())
}

func (s Service) watchdog() int {
	if s.WatchdogSec <= 0 {
		return 60
	}
	return s.WatchdogSec
}

// systemdQuote quotes one ExecStart word: specifiers (%) and variables
// ($) are escaped; words with spaces, quotes or backslashes are double
// quoted with C-style escapes.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\n\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`, ";", `\;`)
	return `"` + r.Replace(s) + `"`
}

// shQuote quotes a word for a POSIX shell.
func shQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,@+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (s Service) shArgs() string {
	q := []string{shQuote(s.Role)}
	for _, a := range s.Args {
		q = append(q, shQuote(a))
	}
	return strings.Join(q, " ")
}

// OpenRCScript renders /etc/init.d/skiff-ROLE for OpenRC. Stopping sends
// SIGTERM to the supervisor (which forwards it) and waits 60s.
func (s Service) OpenRCScript() string {
	return fmt.Sprintf(`#!/sbin/openrc-run
# Written by skiff install (docs/install.md).
description="Skiff %[1]s"
command=%[2]s
command_args=%[3]s
command_background=true
pidfile="/run/%[4]s.pid"
output_log="/var/log/%[4]s.log"
error_log="/var/log/%[4]s.log"
retry="TERM/60/KILL/5"

depend() {
	need net
	after firewall
}
`, s.Role, shQuote(s.Bin), shQuote(s.shArgs()), s.Name())
}

// SysVScript renders a plain SysV init script (no systemd, no OpenRC).
func (s Service) SysVScript() string {
	return fmt.Sprintf(`#!/bin/sh
# Written by skiff install (docs/install.md).
### BEGIN INIT INFO
# Provides:          %[4]s
# Required-Start:    $network $remote_fs
# Required-Stop:     $network $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: Skiff %[1]s
### END INIT INFO
PIDFILE=/run/%[4]s.pid
LOG=/var/log/%[4]s.log

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "$1" in
start)
	running && exit 0
	nohup %[2]s %[3]s >>"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	;;
stop)
	running || exit 0
	kill -TERM "$(cat "$PIDFILE")"
	i=0
	while running && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
	running && kill -KILL "$(cat "$PIDFILE")"
	rm -f "$PIDFILE"
	;;
restart)
	"$0" stop
	"$0" start
	;;
status)
	if running; then echo "%[4]s is running"; else echo "%[4]s is stopped"; exit 3; fi
	;;
*)
	echo "usage: $0 start|stop|restart|status" >&2
	exit 2
	;;
esac
`, s.Role, shQuote(s.Bin), s.shArgs(), s.Name())
}
