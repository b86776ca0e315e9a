package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
	"github.com/skiff-io/skiff/nettools"
)

// nginxConf is the peer's configuration: a plain reverse proxy as
// ingress-nginx renders one for a Prefix "/" rule (proxy_pass to an
// upstream with keep-alive connections, HTTP/1.1 with the Connection
// header cleared, Host and X-Forwarded-* set; ingress-nginx's defaults
// of 320 idle upstream connections and 10000 requests per upstream
// connection, nginx's own 1000 per client connection). worker_processes
// auto is one worker per core. There is no access log: Skiff's ingress
// logs no request either. Every path is in the test's temp dir.
const nginxConf = `worker_processes auto;
daemon off;
master_process on;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path {{dir}}/client_body;
	proxy_temp_path {{dir}}/proxy;
	fastcgi_temp_path {{dir}}/fastcgi;
	uwsgi_temp_path {{dir}}/uwsgi;
	scgi_temp_path {{dir}}/scgi;
	upstream web {
		server {{backend}};
		keepalive 320;
		keepalive_requests 10000;
		keepalive_timeout 60s;
	}
	server {
		listen {{listen}} reuseport;
		server_name web.example.com;
		location / {
			proxy_pass http://web;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Host $host;
			proxy_set_header X-Forwarded-Proto $scheme;
		}
	}
}
`

// nginxBinary finds nginx (Debian installs it in /usr/sbin, which is not
// on every PATH); "" when it is not installed.
func nginxBinary() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return ""
}

// startNginx runs nginx in the network namespace ns as a reverse proxy
// from ip (a free port) to backend, with its config, pid file, logs and
// temp files in a temp dir, and returns its URL and its master's PID. b.Cleanup stops the process group it started (the
// master and its workers) and only that.
func startNginx(b *testing.B, bin, ns, ip, backend string) (string, []int) {
	b.Helper()
	dir := b.TempDir()
	var port int
	if err := nettools.Do(ns, func() error { // a free port on the node's address
		l, err := net.Listen("tcp4", net.JoinHostPort(ip, "0"))
		if err != nil {
			return err
		}
		port = l.Addr().(*net.TCPAddr).Port
		return l.Close()
	}); err != nil {
		b.Fatal(err)
	}
	listen := net.JoinHostPort(ip, strconv.Itoa(port))
	conf := strings.NewReplacer("{{dir}}", dir, "{{backend}}", backend, "{{listen}}", listen).Replace(nginxConf)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", "--net="+ns, bin, "-p", dir, "-c", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start nginx: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	pgid := cmd.Process.Pid // Setpgid: the group is the master's PID
	b.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM) // fast shutdown of master and workers
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
	})
	exited := false
	err = testutil.Poll(20*time.Second, func() error {
		select {
		case err := <-done:
			done <- err
			exited = true
			return nil
		default:
		}
		return nettools.Do(ns, func() error {
			conn, err := net.DialTimeout("tcp4", listen, time.Second)
			if err != nil {
				return err
			}
			return conn.Close()
		})
	})
	if exited || err != nil {
		out, _ := os.ReadFile(filepath.Join(dir, "stderr.log"))
		elog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		b.Fatalf("nginx does not listen on %s (exited: %v, %v): %s%s", listen, exited, err, out, elog)
	}
	// The workers (one per CPU with worker_processes auto), which the
	// master forks once it has its sockets.
	var workers []int
	if err := testutil.Poll(10*time.Second, func() error {
		children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pgid, pgid))
		if err != nil {
			return err
		}
		workers = workers[:0]
		for _, f := range strings.Fields(string(children)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return err
			}
			workers = append(workers, pid)
		}
		if len(workers) < runtime.NumCPU() {
			return fmt.Errorf("%d workers", len(workers))
		}
		return nil
	}); err != nil {
		b.Fatalf("nginx's workers: %v", err)
	}
	b.Logf("nginx %s: %d worker processes (worker_processes auto) on %d CPUs", listen, len(workers), runtime.NumCPU())
	return "http://" + listen + "/", []int{pgid}
}

// cpuTime is the user and system CPU time the processes pids and their
// descendants have used (all threads; /proc/<pid>/stat, in clock ticks
// of 10 ms). Descendants, because skiff server runs its node's work in a
// child process of its own.
func cpuTime(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone: counts nothing more
		}
		// Fields after the command, which is in parentheses and may hold spaces.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		for _, k := range []int{11, 12} { // utime, stime (fields 14 and 15)
			ticks, _ := strconv.ParseInt(f[k], 10, 64)
			total += time.Duration(ticks) * 10 * time.Millisecond
		}
		total += cpuTime(children(pid))
	}
	return total
}

// children are the PIDs of pid's child processes (of all its threads).
func children(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

const noNginx = "nginx is not installed (`make bench` installs it with .ci/deps bench; as root: apt-get install nginx)"
