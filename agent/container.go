package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/runtime/image"
)

// startContainer pulls the image if needed, then creates and starts
// instance attempt of container c in the pod's ready sandbox. It returns
// when to sync again (a back-off) or 0.
func (a *Agent) startContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, attempt uint32, rt *podRuntime, st *podState, isInit bool) time.Duration {
	imageRef, d := a.ensureImage(ctx, pod, c, st)
	if imageRef == "" {
		return d
	}
	sbCfg, err := a.sandboxConfig(pod, rt.ready.GetMetadata().GetAttempt())
	if err != nil {
		st.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
		return 2 * time.Second
	}
	cfg, err := a.containerConfig(ctx, pod, c, attempt, imageRef, rt.podIP(), isInit)
	if ec := ephemeralSpec(pod, c.Name); ec != nil && err == nil {
		err = ephemeralConfig(cfg, ec, rt) // ephemeral.go
	}
	if err != nil {
		msg := err.Error()
		if w := st.waiting[c.Name]; w == nil || w.Message != msg {
			a.events.containerEvent(pod, c.Name, corev1.EventTypeWarning, "Failed", "Error: "+msg)
		}
		st.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: msg}
		return 2 * time.Second
	}
	createStart := time.Now()
	id, err := a.cfg.Runtime.CreateContainer(ctx, rt.ready.Id, cfg, sbCfg)
	if err != nil {
		st.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		a.events.containerEvent(pod, c.Name, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return a.backoffs.delay(2)
	}
	a.events.containerEvent(pod, c.Name, corev1.EventTypeNormal, "Created", "Created container "+c.Name)
	if err := a.cfg.Runtime.StartContainer(ctx, id); err != nil {
		st.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		a.events.containerEvent(pod, c.Name, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		// Keep the failed instance: it counts as a restart.
		return a.backoffs.delay(2)
	}
	delete(st.waiting, c.Name)
	a.log.Debug("container started", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "attempt", attempt,
		"create+start", time.Since(createStart))
	a.events.containerEvent(pod, c.Name, corev1.EventTypeNormal, "Started", "Started container "+c.Name)
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if msg, err := a.runHandler(ctx, pod, c, id, c.Lifecycle.PostStart); err != nil {
			a.events.containerEvent(pod, c.Name, corev1.EventTypeWarning, "FailedPostStartHook",
				fmt.Sprintf("PostStartHook failed: %v %s", err, msg))
			a.stopContainer(ctx, pod, &corev1.Container{Name: c.Name}, id, gracePeriod(pod))
		}
	}
	return 0
}

// ensureImage applies imagePullPolicy and pulls with back-off. It returns
// the image reference to create the container from, or "" and when to
// try again.
func (a *Agent) ensureImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container, st *podState) (string, time.Duration) {
	spec := &runtimeapi.ImageSpec{Image: c.Image, UserSpecifiedImage: c.Image}
	policy := c.ImagePullPolicy
	if policy == "" {
		policy = corev1.PullIfNotPresent
		if imageTag(c.Image) == "latest" {
			policy = corev1.PullAlways
		}
	}
	if policy != corev1.PullAlways {
		img, err := a.cfg.Images.ImageStatus(ctx, spec, false)
		if err != nil {
			st.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "ErrImageInspect", Message: err.Error()}
			return "", 2 * time.Second
		}
		if img.GetImage() != nil {
			a.events.containerEventOnce(pod, c.Name, corev1.EventTypeNormal, "Pulled",
				fmt.Sprintf("Container image %q already present on machine", c.Image))
			return imageRefOf(img.Image), 0
		}
		if policy == corev1.PullNever {
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)
			st.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: msg}
			a.events.containerEventOnce(pod, c.Name, corev1.EventTypeWarning, "ErrImageNeverPull", msg)
			return "", 5 * time.Second
		}
	}
	if n := st.pullFailures[c.Name]; n > 0 {
		delay := a.backoffs.delay(n + 1)
		if wait := delay - time.Since(st.lastPullFailure[c.Name]); wait > 0 {
			st.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: fmt.Sprintf("Back-off pulling image %q", c.Image)}
			a.events.containerEvent(pod, c.Name, corev1.EventTypeNormal, "BackOff", fmt.Sprintf("Back-off pulling image %q", c.Image))
			return "", wait
		}
	}
	a.events.containerEvent(pod, c.Name, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", c.Image))
	start := time.Now()
	sbCfg, _ := a.sandboxConfig(pod, 0)
	ref, err := a.cfg.Images.PullImage(image.WithProgress(ctx, a.pullProgress(pod, c.Name, c.Image)), spec, nil, sbCfg)
	a.kmetrics.podStart.pulled(pod.UID, start)
	if err != nil {
		st.pullFailures[c.Name]++
		st.lastPullFailure[c.Name] = time.Now()
		msg := fmt.Sprintf("Failed to pull image %q: %v", c.Image, err)
		st.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: msg}
		a.events.containerEvent(pod, c.Name, corev1.EventTypeWarning, "Failed", msg)
		a.events.containerEvent(pod, c.Name, corev1.EventTypeWarning, "Failed", "Error: ErrImagePull")
		return "", a.backoffs.delay(st.pullFailures[c.Name] + 1)
	}
	delete(st.pullFailures, c.Name)
	a.events.containerEvent(pod, c.Name, corev1.EventTypeNormal, "Pulled",
		fmt.Sprintf("Successfully pulled image %q in %s", c.Image, time.Since(start).Round(time.Millisecond)))
	if ref == "" {
		ref = c.Image
	}
	return ref, 0
}

// imageRefOf is the reference a container is created from: the image ID.
func imageRefOf(img *runtimeapi.Image) string {
	if img.Id != "" {
		return img.Id
	}
	if len(img.RepoTags) > 0 {
		return img.RepoTags[0]
	}
	return img.GetSpec().GetImage()
}

// imageTag returns the tag of an image reference ("latest" when none and
// no digest).
func imageTag(image string) string {
	if i := lastIndexByte(image, '@'); i >= 0 {
		return ""
	}
	slash := lastIndexByte(image, '/')
	if i := lastIndexByte(image, ':'); i > slash {
		return image[i+1:]
	}
	return "latest"
}

func lastIndexByte(s string, b byte) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == b {
			return i
		}
	}
	return -1
}

// containerConfig builds the CRI config of one container instance.
func (a *Agent) containerConfig(ctx context.Context, pod *corev1.Pod, c *corev1.Container, attempt uint32, imageRef, podIP string, isInit bool) (*runtimeapi.ContainerConfig, error) {
	envs, err := a.containerEnv(ctx, pod, c, podIP)
	if err != nil {
		return nil, err
	}
	vars := map[string]string{}
	for _, e := range envs {
		vars[e.Key] = string(e.Value)
	}
	mounts, err := a.volumes.containerMounts(pod, c)
	if err != nil {
		return nil, err
	}
	mounts = append(mounts, a.hostFileMounts(pod, c)...)
	ctype := "regular"
	if isInit {
		ctype = "init"
	}
	ann := map[string]string{
		annRestartCount:   strconv.FormatUint(uint64(attempt), 10),
		annContainerType:  ctype,
		annPodGracePeriod: strconv.FormatInt(gracePeriod(pod), 10),
	}
	if c.TerminationMessagePath != "" {
		hostPath := filepath.Join(a.cfg.podDir(string(pod.UID)), "containers", c.Name, fmt.Sprintf("%d-termination-log", attempt))
		if err := os.MkdirAll(filepath.Dir(hostPath), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(hostPath, nil, 0o666); err != nil {
			return nil, err
		}
		_ = os.Chmod(hostPath, 0o666)
		mounts = append(mounts, &runtimeapi.Mount{ContainerPath: c.TerminationMessagePath, HostPath: hostPath})
		ann[annTerminationMessagePath] = c.TerminationMessagePath
		ann[annTerminationLog] = hostPath
	}
	cfg := &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: attempt},
		Image:      &runtimeapi.ImageSpec{Image: imageRef, UserSpecifiedImage: c.Image},
		Command:    expandAll(c.Command, vars),
		Args:       expandAll(c.Args, vars),
		WorkingDir: c.WorkingDir,
		Envs:       envs,
		Mounts:     mounts,
		Labels: map[string]string{
			labelPodName: pod.Name, labelPodNamespace: pod.Namespace, labelPodUID: string(pod.UID), labelContainerName: c.Name,
		},
		Annotations: ann,
		LogPath:     filepath.Join(c.Name, fmt.Sprintf("%d.log", attempt)),
		Stdin:       c.Stdin,
		StdinOnce:   c.StdinOnce,
		Tty:         c.TTY,
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       containerResources(pod, c),
			SecurityContext: containerSecurityContext(pod, c),
		},
	}
	if err := checkRunAsNonRoot(pod, c); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkRunAsNonRoot refuses a container that must not run as root but
// names user 0. (A non-numeric image user is for the runtime to check.)
func checkRunAsNonRoot(pod *corev1.Pod, c *corev1.Container) error {
	nonRoot, uid := false, (*int64)(nil)
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.RunAsNonRoot != nil {
			nonRoot = *psc.RunAsNonRoot
		}
		uid = psc.RunAsUser
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsNonRoot != nil {
			nonRoot = *sc.RunAsNonRoot
		}
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
	}
	if nonRoot && uid != nil && *uid == 0 {
		return errors.New("container's runAsUser breaks non-root policy")
	}
	return nil
}

// runHandler runs a lifecycle hook (exec in the container, or an HTTP GET
// to the pod). It returns the output for failure events.
func (a *Agent) runHandler(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, h *corev1.LifecycleHandler) (string, error) {
	switch {
	case h.Exec != nil:
		timeout := int64(30)
		if dl, ok := ctx.Deadline(); ok {
			timeout = int64(time.Until(dl)/time.Second) + 1
		}
		out, errOut, err := a.cfg.Runtime.ExecSync(ctx, id, h.Exec.Command, timeout)
		return string(out) + string(errOut), err
	case h.HTTPGet != nil:
		rt, err := a.podRuntime(ctx, pod.UID)
		if err != nil {
			return "", err
		}
		ip := rt.podIP()
		if ip == "" {
			ip = a.cfg.NodeIP
		}
		res, msg := a.probeHTTP(ctx, pod, c, ip, h.HTTPGet, 10*time.Second)
		if res != probeSuccess {
			return msg, errors.New("HTTP lifecycle hook failed")
		}
		return "", nil
	case h.Sleep != nil:
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		}
		return "", nil
	}
	return "", nil
}

// pullProgressInterval spaces the progress events of one pull.
const pullProgressInterval = 2 * time.Second

// pullProgress returns the image store's progress callback for one pull: a
// Pulling event with the bytes fetched so far, at most every
// pullProgressInterval.
func (a *Agent) pullProgress(pod *corev1.Pod, container, img string) image.ProgressFunc {
	var last time.Time
	return func(p image.Progress) {
		if p.Phase != "downloading" || p.Total <= 0 || time.Since(last) < pullProgressInterval {
			return
		}
		last = time.Now()
		a.events.containerEvent(pod, container, corev1.EventTypeNormal, "Pulling",
			fmt.Sprintf("Pulling image %q: %.1f MB of %.1f MB", img, float64(p.Done)/1e6, float64(p.Total)/1e6))
	}
}
