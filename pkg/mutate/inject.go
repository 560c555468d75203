package mutate

import (
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// shimInstallCommand is the shim init container's command; it is also how a later pass recognises it.
var shimInstallCommand = []string{ShimImagePath, "install", ShimDir}

// isOurs reports whether an init container was added by lastcall, judged by its structure, not its name:
// a user may own a container called lastcall-shim.
func isOurs(c *corev1.Container) bool {
	if len(c.Command) == len(shimInstallCommand) && c.Command[0] == shimInstallCommand[0] && c.Command[1] == "install" && c.Command[2] == ShimDir {
		return true
	}
	return len(c.Command) > 2 && c.Command[0] == ShimPath && c.Command[1] == "check"
}

// shimVolumeName returns the volume lastcall uses: the one its own init container mounts, or lastcall-bin,
// or lastcall-bin-N when the user already has a volume of that name.
func (e *Engine) shimVolumeName(pod *corev1.Pod) string {
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if isOurs(c) && c.Command[0] == ShimImagePath {
			for _, m := range c.VolumeMounts {
				if m.MountPath == ShimDir {
					return m.Name
				}
			}
		}
	}
	taken := make(map[string]bool, len(pod.Spec.Volumes))
	for _, v := range pod.Spec.Volumes {
		taken[v.Name] = true
	}
	return uniqueName(ShimVolumeName, taken)
}

func uniqueName(base string, taken map[string]bool) string {
	if !taken[base] {
		return base
	}
	for i := 2; ; i++ {
		n := base + "-" + strconv.Itoa(i)
		if !taken[n] {
			return n
		}
	}
}

// hasForeignMount reports a mount at the shim's directory that is not lastcall's volume.
func hasForeignMount(c *corev1.Container, volume string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == ShimDir && m.Name != volume {
			return true
		}
	}
	return false
}

func ensureMount(c *corev1.Container, volume string) {
	for _, m := range c.VolumeMounts {
		if m.MountPath == ShimDir {
			return
		}
	}
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: volume, MountPath: ShimDir, ReadOnly: true})
}

// restrictedSecurityContext satisfies the Pod Security "restricted" profile whatever the pod says.
func restrictedSecurityContext() *corev1.SecurityContext {
	t, f := true, false
	uid := int64(65532)
	return &corev1.SecurityContext{
		RunAsNonRoot:             &t,
		RunAsUser:                &uid,
		RunAsGroup:               &uid,
		AllowPrivilegeEscalation: &f,
		ReadOnlyRootFilesystem:   &t,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// ensureShim puts the shim's init container first and its emptyDir volume in place (upsert, so a second pass
// and a changed policy both converge on the same spec).
func (e *Engine) ensureShim(pod *corev1.Pod, st *shimState) {
	want := corev1.Container{
		Name:                     ShimContainerName,
		Image:                    e.policy.Shim.Image,
		ImagePullPolicy:          e.policy.Shim.ImagePullPolicy,
		Command:                  append([]string(nil), shimInstallCommand...),
		Resources:                *e.policy.Shim.Resources.DeepCopy(),
		VolumeMounts:             []corev1.VolumeMount{{Name: st.volume, MountPath: ShimDir}},
		SecurityContext:          restrictedSecurityContext(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
	}
	inits := pod.Spec.InitContainers
	idx := -1
	for i := range inits {
		if isOurs(&inits[i]) && inits[i].Command[0] == ShimImagePath {
			idx = i
			break
		}
	}
	if idx >= 0 {
		want.Name = inits[idx].Name
		inits = append(inits[:idx], inits[idx+1:]...)
	} else {
		want.Name = uniqueName(ShimContainerName, takenNames(pod))
	}
	pod.Spec.InitContainers = append([]corev1.Container{want}, inits...)

	for _, v := range pod.Spec.Volumes {
		if v.Name == st.volume {
			return
		}
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: st.volume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
}

func takenNames(pod *corev1.Pod) map[string]bool {
	m := make(map[string]bool, len(pod.Spec.Containers)+len(pod.Spec.InitContainers))
	for i := range pod.Spec.Containers {
		m[pod.Spec.Containers[i].Name] = true
	}
	for i := range pod.Spec.InitContainers {
		m[pod.Spec.InitContainers[i].Name] = true
	}
	return m
}

// checkName is the check init container's name for an app container, within the 63-character limit.
func checkName(container string) string {
	n := CheckContainerPrefix + container
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "-")
	}
	return n
}

// ensureCheck upserts the preflight check for one container. It runs in the app's own image with the app's
// env, mounts and securityContext, because the check must read the configuration the app will really use.
func (e *Engine) ensureCheck(pod *corev1.Pod, p *plan, st *shimState) {
	app := p.c
	cmd := []string{ShimPath, "check", "php-fpm", "--budget", p.timeout.String(), "--mode", e.policy.CheckMode}
	original, _ := unwrapCommand(app.Command)
	if len(original) > 0 && strings.HasPrefix(profiles.Program(original, nil), "php-fpm") {
		cmd = append(cmd, "--binary", original[0])
	}
	if cfg := fpmConfigArg(original, app.Args); cfg != "" {
		cmd = append(cmd, "--config", cfg)
	}
	mounts := make([]corev1.VolumeMount, 0, len(app.VolumeMounts)+1)
	for _, m := range app.VolumeMounts {
		if m.MountPath != ShimDir {
			mounts = append(mounts, *m.DeepCopy())
		}
	}
	mounts = append(mounts, corev1.VolumeMount{Name: st.volume, MountPath: ShimDir, ReadOnly: true})
	want := corev1.Container{
		Image:                    app.Image,
		ImagePullPolicy:          app.ImagePullPolicy,
		Command:                  cmd,
		WorkingDir:               app.WorkingDir,
		Env:                      deepCopyEnv(app.Env),
		EnvFrom:                  deepCopyEnvFrom(app.EnvFrom),
		VolumeMounts:             mounts,
		Resources:                *e.policy.Checks.Resources.DeepCopy(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
	}
	if app.SecurityContext != nil {
		want.SecurityContext = app.SecurityContext.DeepCopy()
	}
	p.d.Checks = append(p.d.Checks[:0], string(profiles.CheckPHPFPMProcessControlTimeout))

	// Upsert by name; a user container that happens to have our name is left alone and we take the next name.
	base := checkName(app.Name)
	taken := takenNames(pod)
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.Name == base || strings.HasPrefix(c.Name, base+"-") {
			if isOurs(c) && c.Command[1] == "check" {
				want.Name = c.Name
				*c = want
				return
			}
		}
	}
	want.Name = uniqueName(base, taken)
	pod.Spec.InitContainers = append(pod.Spec.InitContainers, want)
}

// fpmConfigArg finds php-fpm's -y/--fpm-config argument.
func fpmConfigArg(command, args []string) string {
	words := make([]string, 0, len(command)+len(args))
	words = append(append(words, command...), args...)
	for i, w := range words {
		switch {
		case (w == "-y" || w == "--fpm-config") && i+1 < len(words):
			return words[i+1]
		case strings.HasPrefix(w, "--fpm-config="):
			return strings.TrimPrefix(w, "--fpm-config=")
		}
	}
	return ""
}

func deepCopyEnv(in []corev1.EnvVar) []corev1.EnvVar {
	if in == nil {
		return nil
	}
	out := make([]corev1.EnvVar, len(in))
	for i := range in {
		in[i].DeepCopyInto(&out[i])
	}
	return out
}

func deepCopyEnvFrom(in []corev1.EnvFromSource) []corev1.EnvFromSource {
	if in == nil {
		return nil
	}
	out := make([]corev1.EnvFromSource, len(in))
	for i := range in {
		in[i].DeepCopyInto(&out[i])
	}
	return out
}

// record writes the lastcall.dev/injected and lastcall.dev/version annotations.
func (e *Engine) record(pod *corev1.Pod, res *Result) {
	if inj := res.Injected(); len(inj) > 0 {
		if pod.Annotations == nil {
			pod.Annotations = make(map[string]string, 2)
		}
		pod.Annotations[AnnotationInjected] = strings.Join(inj, ",")
		pod.Annotations[AnnotationVersion] = e.version
	}
}

// finish removes duplicate problems (a bad pod-wide value is seen once per container) and sorts them: map
// iteration made the order random, and messages must be stable for users and goldens.
func finish(res *Result) {
	if len(res.Problems) > 1 {
		seen := make(map[string]bool, len(res.Problems))
		out := res.Problems[:0]
		for _, p := range res.Problems {
			if k := p.Key + "\x00" + p.Fallback; !seen[k] {
				seen[k] = true
				out = append(out, p)
			}
		}
		res.Problems = out
		sort.SliceStable(res.Problems, func(i, j int) bool {
			a, b := res.Problems[i], res.Problems[j]
			return a.Key < b.Key || (a.Key == b.Key && a.Fallback < b.Fallback)
		})
	}
}
