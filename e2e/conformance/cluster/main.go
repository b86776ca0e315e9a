//go:build ignore

// Command cluster is the Skiff side of `make conformance` (see
// docs/CONFORMANCE.md). It lives beside the nested module that builds the
// upstream suite but belongs to the main module: the build tag keeps it out
// of the nested module, and run.sh builds it from the repository root by file
// name, so it uses e2e/testutil and runtime/testutil at the main module's
// k8s.io release:
//
//	go build -o bin/conformance-cluster ./e2e/conformance/cluster/main.go
//
//	conformance-cluster images -out DIR -agnhost BIN -pause BIN -agnhost-ref R -busybox-ref R -pause-ref R
//	conformance-cluster up -images DIR -kubeconfig FILE -work DIR
//
// `images` writes the test images that can be built here as docker
// archives (agnhost, busybox, pause, and jessie-dnsutils as a stand-in); `up` starts one master (with its embedded agent) and two agents,
// each in a test network namespace (testutil.NetCluster), imports the
// archives on every node, writes an admin kubeconfig, and keeps the cluster
// until SIGINT or SIGTERM, when it deletes every pod and stops the nodes.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-io/skiff/e2e/testutil"
	rtestutil "github.com/skiff-io/skiff/runtime/testutil"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: conformance-cluster images|up [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "images":
		err = images(os.Args[2:])
	case "up":
		err = up(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance-cluster:", err)
		os.Exit(1)
	}
}

// images writes agnhost.tar, busybox.tar and pause.tar into -out.
func images(args []string) error {
	fs := flag.NewFlagSet("images", flag.ExitOnError)
	out := fs.String("out", "", "directory for the archives")
	agnhost := fs.String("agnhost", "", "agnhost binary (static)")
	porter := fs.String("porter-certs", "", "directory holding agnhost's porter/localhost.crt and .key")
	pause := fs.String("pause", "", "pause binary (static)")
	busybox := fs.String("busybox", rtestutil.BusyboxPath, "static busybox (Debian busybox-static)")
	agnhostRef := fs.String("agnhost-ref", "", "agnhost image name the suite asks for")
	busyboxRef := fs.String("busybox-ref", "", "busybox image names the suite asks for, comma-separated (one archive each)")
	pauseRef := fs.String("pause-ref", "", "pause image name the suite asks for")
	jessieRef := fs.String("jessie-ref", "", "jessie-dnsutils image name the suite asks for (built as the agnhost root without agnhost)")
	httpdRef := fs.String("httpd-ref", "", "httpd image names the suite asks for, comma-separated (stand-ins: busybox's httpd serving /usr/local/apache2/htdocs on port 80)")
	nginxRef := fs.String("nginx-ref", "", "nginx image names the suite asks for, comma-separated (stand-ins: busybox's httpd serving /usr/share/nginx/html on port 80)")
	nnp := fs.String("nnp", "", "upstream's nonewprivs program (test/images/nonewprivs, static)")
	nnpRef := fs.String("nonewprivs-ref", "", "nonewprivs image name the suite asks for (busybox with a set-user-ID root nnp)")
	testImages := fs.String("test-images", "", "upstream's test/images directory (the update demo's kitten/html and nautilus/html)")
	kittenRef := fs.String("kitten-ref", "", "kitten image name the suite asks for (agnhost's test-webserver serving kitten.jpg and data.json)")
	nautilusRef := fs.String("nautilus-ref", "", "nautilus image name the suite asks for (as kitten)")
	tools := fs.String("host-tools", "curl,dig,nslookup,host,nc,getent,bash,ip,ss", "host programs copied into agnhost and jessie-dnsutils with their shared libraries (upstream's have them from their distributions); missing ones are left out")
	_ = fs.Parse(args)
	if *out == "" || *agnhost == "" || *pause == "" || *agnhostRef == "" || *busyboxRef == "" || *pauseRef == "" {
		return errors.New("images: -out, -agnhost, -pause and the three -*-ref flags are required")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}

	// busybox: upstream's is busybox with `sh` as its command. Debian's
	// busybox 1.35 ash drops environment variables whose names are not
	// shell identifiers (`data-1`, `1-data-1`) before it runs a command,
	// which upstream's busybox 1.37 passes on (the ConfigMap and Secret
	// "environment variable names with various prefixes" tests print them
	// with `sh -c env`), so /bin/sh is the host's bash, as in agnhost below.
	bbFiles, err := rtestutil.BusyboxFiles(*busybox)
	if err != nil {
		return fmt.Errorf("busybox image: %w", err)
	}
	bash, missingBash, err := hostTools([]string{"bash"})
	if err != nil {
		return fmt.Errorf("busybox image: %w", err)
	}
	if len(missingBash) == 0 {
		bbFiles = append(withoutPaths(bbFiles, "bin/sh"), bash...)
		bbFiles = append(bbFiles, rtestutil.File{Path: "bin/sh", Link: "/usr/bin/bash"})
	} else {
		fmt.Fprintln(os.Stderr, "conformance-cluster: busybox image keeps busybox's sh (no bash here): the env-prefix tests will fail")
	}
	bbLayer, err := rtestutil.Layer(bbFiles)
	if err != nil {
		return fmt.Errorf("busybox image: %w", err)
	}
	bb, err := rtestutil.Image(v1.Config{Cmd: []string{"sh"}}, bbLayer)
	if err != nil {
		return fmt.Errorf("busybox image: %w", err)
	}
	for _, ref := range strings.Split(*busyboxRef, ",") {
		if err := write(*out, "busybox-"+ref[strings.LastIndex(ref, ":")+1:]+".tar", ref, bb); err != nil {
			return err
		}
	}

	// httpd and nginx: stand-ins. The suite's Deployment, ReplicaSet,
	// ReplicationController, StatefulSet, DaemonSet and kubectl tests run
	// them as "a web server on port 80 whose readiness probe reads
	// /index.html" (the StatefulSet tests move index.html away and back
	// with sh and mv to fail and restore it); busybox's httpd, serving the
	// upstream image's document root, does that.
	for _, web := range []struct{ refs, root, page string }{
		{*httpdRef, "/usr/local/apache2/htdocs", "<html><body><h1>It works!</h1></body></html>\n"},
		{*nginxRef, "/usr/share/nginx/html", "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>\n"},
	} {
		if web.refs == "" {
			continue
		}
		files, err := rtestutil.BusyboxFiles(*busybox)
		if err != nil {
			return fmt.Errorf("web server image: %w", err)
		}
		dir := ""
		for _, part := range strings.Split(strings.Trim(web.root, "/"), "/") {
			dir = strings.TrimPrefix(dir+"/"+part, "/")
			files = append(files, rtestutil.File{Path: dir, Dir: true})
		}
		files = append(files, rtestutil.File{Path: dir + "/index.html", Mode: 0o644, Data: web.page})
		l, err := rtestutil.Layer(files)
		if err != nil {
			return err
		}
		img, err := rtestutil.Image(v1.Config{Cmd: []string{"httpd", "-f", "-p", "80", "-h", web.root},
			ExposedPorts: map[string]struct{}{"80/tcp": {}}}, l)
		if err != nil {
			return err
		}
		for _, ref := range strings.Split(web.refs, ",") {
			name := ref[strings.LastIndex(ref, "/")+1:]
			if err := write(*out, strings.NewReplacer(":", "-").Replace(name)+".tar", ref, img); err != nil {
				return err
			}
		}
	}

	// nonewprivs: upstream's Dockerfile puts its program (it prints the
	// effective uid) at /usr/local/bin/nnp, set-user-ID root, on busybox;
	// run as uid 1000 it prints 0 unless allowPrivilegeEscalation is false.
	if *nnpRef != "" && *nnp != "" {
		nb, err := os.ReadFile(*nnp)
		if err != nil {
			return err
		}
		files, err := rtestutil.BusyboxFiles(*busybox)
		if err != nil {
			return fmt.Errorf("nonewprivs image: %w", err)
		}
		files = append(files, rtestutil.File{Path: "usr/local", Dir: true}, rtestutil.File{Path: "usr/local/bin", Dir: true},
			rtestutil.File{Path: "usr/local/bin/nnp", Mode: 0o4755, Data: string(nb)})
		l, err := rtestutil.Layer(files)
		if err != nil {
			return err
		}
		img, err := rtestutil.Image(v1.Config{Cmd: []string{"nnp"},
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}, l)
		if err != nil {
			return err
		}
		if err := write(*out, "nonewprivs.tar", *nnpRef, img); err != nil {
			return err
		}
	}

	// pause: one static binary.
	pb, err := os.ReadFile(*pause)
	if err != nil {
		return err
	}
	pl, err := rtestutil.Layer([]rtestutil.File{{Path: "pause", Mode: 0o755, Data: string(pb)}})
	if err != nil {
		return err
	}
	pi, err := rtestutil.Image(v1.Config{Entrypoint: []string{"/pause"}}, pl)
	if err != nil {
		return err
	}
	if err := write(*out, "pause.tar", *pauseRef, pi); err != nil {
		return err
	}

	// A busybox root with what upstream's images get from their
	// distributions: curl, dig, nc (OpenBSD's, as Alpine's), getent, bash,
	// ip and ss copied from the host with their libraries, and an
	// nsswitch.conf that reads /etc/hosts before DNS. The agnhost and
	// jessie-dnsutils images are this root plus their own files.
	root, err := rtestutil.BusyboxFiles(*busybox)
	if err != nil {
		return err
	}
	root = withoutPaths(root, "etc/passwd", "etc/group")
	root = append(root,
		rtestutil.File{Path: "etc/passwd", Data: "root:x:0:0:root:/root:/bin/sh\n" +
			"user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		rtestutil.File{Path: "etc/group", Data: "root:x:0:\nuser-defined-in-image:x:1000:\n" +
			"group-defined-in-image:x:50000:user-defined-in-image\nnogroup:x:65534:\n"},
		rtestutil.File{Path: "etc/nsswitch.conf", Data: "passwd: files\ngroup: files\nhosts: files dns\n"},
		rtestutil.File{Path: "home/user-defined-in-image", Dir: true},
	)
	extra, missing, err := hostTools(strings.Split(*tools, ","))
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "conformance-cluster: images without %s (not installed here)\n", strings.Join(missing, ", "))
	}
	root = append(root, extra...)
	// Debian's busybox-static is a standalone shell: its sh runs its own
	// applets before PATH (its nc has no -v, which the Service tests use),
	// so /bin/sh is bash where the host has bash.
	for _, f := range extra {
		if f.Path == "/usr/bin/bash" {
			root = append(withoutPaths(root, "bin/sh"), rtestutil.File{Path: "bin/sh", Link: "/usr/bin/bash"})
		}
	}

	if *jessieRef != "" {
		jl, err := rtestutil.Layer(root)
		if err != nil {
			return err
		}
		ji, err := rtestutil.Image(v1.Config{Cmd: []string{"sh"}}, jl)
		if err != nil {
			return err
		}
		if err := write(*out, "jessie-dnsutils.tar", *jessieRef, ji); err != nil {
			return err
		}
	}

	// agnhost: upstream's Dockerfile (test/images/agnhost) adds /agnhost,
	// the /agnhost-2 link, /uploads, porter's certificate, and the user
	// and group the SupplementalGroups test expects (in root above).
	ab, err := os.ReadFile(*agnhost)
	if err != nil {
		return err
	}
	files := append(append([]rtestutil.File{}, root...),
		rtestutil.File{Path: "uploads", Dir: true, Mode: 0o777},
		rtestutil.File{Path: "agnhost", Mode: 0o755, Data: string(ab)},
		rtestutil.File{Path: "agnhost-2", Link: "agnhost"},
	)
	if *porter != "" {
		for _, n := range []string{"localhost.crt", "localhost.key"} {
			b, err := os.ReadFile(filepath.Join(*porter, n))
			if err != nil {
				return err
			}
			files = append(files, rtestutil.File{Path: n, Mode: 0o644, Data: string(b)})
		}
	}
	al, err := rtestutil.Layer(files)
	if err != nil {
		return err
	}
	agnCfg := v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "8080/tcp": {}, "8081/tcp": {}, "9376/tcp": {}, "5000/tcp": {}}}
	ai, err := rtestutil.Image(agnCfg, al)
	if err != nil {
		return err
	}
	if err := write(*out, "agnhost.tar", *agnhostRef, ai); err != nil {
		return err
	}

	// kitten and nautilus (kubectl's update demo): upstream's are agnhost
	// with the picture and data.json copied to / and test-webserver (a
	// file server of / on port 80) as the command; the test reads
	// data.json through the pod proxy.
	for _, demo := range []struct{ name, ref string }{{"kitten", *kittenRef}, {"nautilus", *nautilusRef}} {
		if demo.ref == "" || *testImages == "" {
			continue
		}
		var files []rtestutil.File
		for _, n := range []string{demo.name + ".jpg", "data.json"} {
			b, err := os.ReadFile(filepath.Join(*testImages, demo.name, "html", n))
			if err != nil {
				return fmt.Errorf("%s image: %w", demo.name, err)
			}
			files = append(files, rtestutil.File{Path: n, Mode: 0o644, Data: string(b)})
		}
		dl, err := rtestutil.Layer(files)
		if err != nil {
			return err
		}
		cfg := agnCfg
		cfg.Cmd = []string{"test-webserver"}
		img, err := rtestutil.Image(cfg, al, dl)
		if err != nil {
			return err
		}
		if err := write(*out, demo.name+".tar", demo.ref, img); err != nil {
			return err
		}
	}
	return nil
}

func write(dir, file, ref string, img v1.Image) error {
	p := filepath.Join(dir, file)
	if err := rtestutil.WriteDockerArchive(p, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	fmt.Printf("wrote %s (%s)\n", p, ref)
	return nil
}

func withoutPaths(files []rtestutil.File, paths ...string) []rtestutil.File {
	var out []rtestutil.File
	for _, f := range files {
		drop := false
		for _, p := range paths {
			if strings.TrimPrefix(f.Path, "/") == p {
				drop = true
			}
		}
		if !drop {
			out = append(out, f)
		}
	}
	return out
}

var lddPath = regexp.MustCompile(`(?m)(/\S+) \(0x[0-9a-f]+\)$`)

// hostTools returns the named programs (found on PATH), each at
// /usr/bin/NAME, with every shared library ldd names at its own path, and
// their parent directories.
func hostTools(names []string) (files []rtestutil.File, missing []string, err error) {
	src := map[string]string{} // path in the image -> file here
	for _, n := range names {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		p, err := exec.LookPath(n)
		if err != nil {
			missing = append(missing, n)
			continue
		}
		src["/usr/bin/"+filepath.Base(p)] = p
		out, err := exec.Command("ldd", p).Output()
		if err != nil {
			return nil, nil, fmt.Errorf("ldd %s: %w", p, err)
		}
		for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
			src[m[1]] = m[1]
		}
	}
	var dsts []string
	dirs := map[string]bool{}
	for dst := range src {
		dsts = append(dsts, dst)
		for d := filepath.Dir(dst); d != "/" && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	var dl []string
	for d := range dirs {
		if d != "/bin" && d != "/etc" && d != "/tmp" { // in BusyboxFiles
			dl = append(dl, d)
		}
	}
	sort.Strings(dl)
	for _, d := range dl {
		files = append(files, rtestutil.File{Path: d, Dir: true})
	}
	sort.Strings(dsts)
	for _, dst := range dsts {
		b, err := os.ReadFile(src[dst]) // follows links: the library's real file
		if err != nil {
			return nil, nil, err
		}
		files = append(files, rtestutil.File{Path: dst, Mode: 0o755, Data: string(b)})
	}
	return files, missing, nil
}

// up runs the cluster until SIGINT or SIGTERM.
func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	imgDir := fs.String("images", "", "directory of image archives imported by every node")
	kubeconfig := fs.String("kubeconfig", "", "admin kubeconfig to write once the nodes are Ready")
	work := fs.String("work", "", "directory for the nodes' data dirs")
	nodes := fs.Int("nodes", 3, "nodes: the master (with its embedded agent) and nodes-1 agents")
	_ = fs.Parse(args)
	if *kubeconfig == "" || *work == "" {
		return errors.New("up: -kubeconfig and -work are required")
	}
	var archives []string
	if *imgDir != "" {
		m, err := filepath.Glob(filepath.Join(*imgDir, "*.tar"))
		if err != nil {
			return err
		}
		archives = m
	}
	t := &runner{work: *work}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer t.cleanup()

	start := time.Now()
	c := testutil.NewNetCluster(t, testutil.NetClusterOptions{Nodes: *nodes, ImageArchives: archives})
	cfg, err := clientcmd.LoadFromFile(c.Master.Kubeconfig())
	if err != nil {
		return err
	}
	for _, cl := range cfg.Clusters {
		cl.Server = c.Master.URL()
	}
	if err := clientcmd.WriteToFile(*cfg, *kubeconfig); err != nil {
		return err
	}
	var addrs []string
	for i := 0; i < c.Nodes(); i++ {
		addrs = append(addrs, c.NodeName(i)+"="+c.NodeIP(i))
	}
	fmt.Printf("cluster ready in %s: API %s, nodes %s; kubeconfig %s\n", time.Since(start).Round(time.Second),
		c.Master.URL(), strings.Join(addrs, " "), *kubeconfig)
	s := <-sigs
	fmt.Printf("cluster: %s: deleting pods and stopping the nodes\n", s)
	return nil
}

// runner is the testutil.TB of a program: Fatalf runs the cleanups and
// exits; Cleanup functions run in reverse order when up returns.
type runner struct {
	work string

	mu       sync.Mutex
	cleanups []func()
	cleaning bool
	n        int
}

func (r *runner) Helper()      {}
func (r *runner) Name() string { return "conformance" }

func (r *runner) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cluster: "+format+"\n", args...)
}

func (r *runner) Errorf(format string, args ...any) { r.Logf(format, args...) }

func (r *runner) Fatalf(format string, args ...any) {
	r.Logf(format, args...)
	r.mu.Lock()
	cleaning := r.cleaning
	r.mu.Unlock()
	if cleaning {
		return
	}
	r.cleanup()
	os.Exit(1)
}

func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *runner) TempDir() string {
	r.mu.Lock()
	r.n++
	d := filepath.Join(r.work, fmt.Sprintf("%03d", r.n))
	r.mu.Unlock()
	if err := os.MkdirAll(d, 0o755); err != nil {
		r.Fatalf("temp dir: %v", err)
	}
	return d
}

func (r *runner) cleanup() {
	r.mu.Lock()
	if r.cleaning {
		r.mu.Unlock()
		return
	}
	r.cleaning = true
	fs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
