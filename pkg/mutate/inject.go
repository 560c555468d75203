package mutate

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

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
	ours := false
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if isOurs(c) && c.Command[0] == ShimImagePath {
			ours = true
			for _, m := range c.VolumeMounts {
				if m.MountPath == ShimDir {
					return m.Name
				}
			}
		}
	}
	if ours {
		// Our init container lost its mount (someone edited it): the emptyDir we named is still ours.
		for _, v := range pod.Spec.Volumes {
			if v.Name == ShimVolumeName && v.EmptyDir != nil {
				return v.Name
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

// ensureShim puts the shim's init container first and its emptyDir volume in place. On a later pass
// (reinvocation, the CLI run twice) it updates only what lastcall owns in its container (image, pull policy,
// command and args, its own mount, the resources it sets, the securityContext fields it sets when unset) and
// leaves the rest as it finds it: a mount, env or resource another mutator added (the ServiceAccount token
// mount, a Vault agent's env) and the container's position among init containers. Fighting them would make
// the API server reinvoke every webhook for every pod, and would break their policy.
func (e *Engine) ensureShim(pod *corev1.Pod, st *shimState) {
	idx := -1
	for i := range pod.Spec.InitContainers {
		if c := &pod.Spec.InitContainers[i]; isOurs(c) && c.Command[0] == ShimImagePath {
			idx = i
			break
		}
	}
	if idx < 0 {
		want := corev1.Container{
			Name:                     uniqueName(ShimContainerName, takenNames(pod)),
			Image:                    e.policy.Shim.Image,
			ImagePullPolicy:          e.policy.Shim.ImagePullPolicy,
			Command:                  append([]string(nil), shimInstallCommand...),
			Resources:                *e.policy.Shim.Resources.DeepCopy(),
			VolumeMounts:             []corev1.VolumeMount{{Name: st.volume, MountPath: ShimDir}},
			SecurityContext:          restrictedSecurityContext(),
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		}
		pod.Spec.InitContainers = append([]corev1.Container{want}, pod.Spec.InitContainers...)
	} else {
		c := &pod.Spec.InitContainers[idx]
		c.Image, c.ImagePullPolicy, c.Args = e.policy.Shim.Image, e.policy.Shim.ImagePullPolicy, nil
		if !equalStrings(c.Command, shimInstallCommand) {
			c.Command = append([]string(nil), shimInstallCommand...)
		}
		upsertMount(c, corev1.VolumeMount{Name: st.volume, MountPath: ShimDir})
		setResources(&c.Resources, &e.policy.Shim.Resources)
		fillSecurityContext(c)
		if c.TerminationMessagePolicy == "" {
			c.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
		}
	}

	for _, v := range pod.Spec.Volumes {
		if v.Name == st.volume {
			return
		}
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: st.volume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// upsertMount sets the volume and read-only flag of the mount at m.MountPath, or appends m; other mounts
// (and other fields of that mount) stay as they are, in order.
func upsertMount(c *corev1.Container, m corev1.VolumeMount) {
	for i := range c.VolumeMounts {
		if cur := &c.VolumeMounts[i]; cur.MountPath == m.MountPath {
			cur.Name, cur.ReadOnly = m.Name, m.ReadOnly
			if m.SubPath != "" || cur.SubPath != "" {
				cur.SubPath = m.SubPath
			}
			return
		}
	}
	c.VolumeMounts = append(c.VolumeMounts, m)
}

// setResources sets the quantities the policy names and leaves every other resource as found.
func setResources(dst, policy *corev1.ResourceRequirements) {
	set := func(dst *corev1.ResourceList, src corev1.ResourceList) {
		for name, q := range src {
			if cur, ok := (*dst)[name]; ok && cur.Cmp(q) == 0 {
				continue
			}
			if *dst == nil {
				*dst = make(corev1.ResourceList, len(src))
			}
			(*dst)[name] = q.DeepCopy()
		}
	}
	set(&dst.Requests, policy.Requests)
	set(&dst.Limits, policy.Limits)
}

// fillSecurityContext sets the restricted fields lastcall sets on its own container where they are unset. A
// field another mutator set is its policy and stays.
func fillSecurityContext(c *corev1.Container) {
	want := restrictedSecurityContext()
	if c.SecurityContext == nil {
		c.SecurityContext = want
		return
	}
	sc := c.SecurityContext
	if sc.RunAsNonRoot == nil {
		sc.RunAsNonRoot = want.RunAsNonRoot
	}
	if sc.RunAsUser == nil {
		sc.RunAsUser = want.RunAsUser
	}
	if sc.RunAsGroup == nil {
		sc.RunAsGroup = want.RunAsGroup
	}
	if sc.AllowPrivilegeEscalation == nil {
		sc.AllowPrivilegeEscalation = want.AllowPrivilegeEscalation
	}
	if sc.ReadOnlyRootFilesystem == nil {
		sc.ReadOnlyRootFilesystem = want.ReadOnlyRootFilesystem
	}
	if sc.Capabilities == nil {
		sc.Capabilities = want.Capabilities
	}
	if sc.SeccompProfile == nil {
		sc.SeccompProfile = want.SeccompProfile
	}
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

// checkName is the check init container's name for an app container: lastcall-check-<container>, within the
// 63-character limit (shortened with a hash of the whole container name, so two long names that share a
// prefix get two names) and different from every name in taken.
func checkName(container string, taken map[string]bool) string {
	n := CheckContainerPrefix + container
	if len(n) > MaxNameLength {
		n = strings.TrimRight(n[:MaxNameLength-9], "-") + "-" + shortHash(container)
	}
	return uniqueNameMax(n, taken, MaxNameLength)
}

// shortHash is 8 hex digits of FNV-1a: stable across versions, so a later pass finds the same name.
func shortHash(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}

// uniqueNameMax is uniqueName for names that must stay within max characters.
func uniqueNameMax(base string, taken map[string]bool, max int) string {
	if !taken[base] {
		return base
	}
	for i := 2; ; i++ {
		suffix := "-" + strconv.Itoa(i)
		n := base
		if len(n)+len(suffix) > max {
			n = strings.TrimRight(n[:max-len(suffix)], "-")
		}
		if n += suffix; !taken[n] {
			return n
		}
	}
}

// checkServes reports whether c is lastcall's check init container for the app container named app: by the
// CheckForEnv marker, or (checks written before the marker existed) by the exact name lastcall gives it.
func checkServes(c *corev1.Container, app string) bool {
	if !isOurs(c) || c.Command[1] != "check" {
		return false
	}
	for i := range c.Env {
		if c.Env[i].Name == CheckForEnv {
			return c.Env[i].Value == app && c.Env[i].ValueFrom == nil
		}
	}
	return c.Name == CheckContainerPrefix+app
}

// ensureCheck upserts the preflight check for one container. It runs in the app's own image with the app's
// env, mounts and securityContext, because the check must read the configuration the app will really use.
// The check is found again by the container it serves (CheckForEnv), never by a name prefix: containers php
// and php-admin each get their own. On a later pass it updates what it derives from the app and leaves what
// another mutator added (extra env, mounts, resources) in place.
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
	env := make([]corev1.EnvVar, 0, len(app.Env)+1)
	env = append(append(env, deepCopyEnv(app.Env)...), corev1.EnvVar{Name: CheckForEnv, Value: app.Name})
	p.d.Checks = append(p.d.Checks[:0], string(profiles.CheckPHPFPMProcessControlTimeout))

	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if !checkServes(c, app.Name) {
			continue
		}
		c.Image, c.ImagePullPolicy, c.WorkingDir, c.Args = app.Image, app.ImagePullPolicy, app.WorkingDir, nil
		if !equalStrings(c.Command, cmd) {
			c.Command = cmd
		}
		c.Env = upsertEach(c.Env, env, func(a, b *corev1.EnvVar) bool { return a.Name == b.Name })
		c.EnvFrom = upsertEach(c.EnvFrom, app.EnvFrom, func(a, b *corev1.EnvFromSource) bool { return equality.Semantic.DeepEqual(a, b) })
		c.VolumeMounts = upsertEach(c.VolumeMounts, mounts, func(a, b *corev1.VolumeMount) bool { return a.MountPath == b.MountPath })
		setResources(&c.Resources, &e.policy.Checks.Resources)
		if c.SecurityContext == nil && app.SecurityContext != nil {
			c.SecurityContext = app.SecurityContext.DeepCopy()
		}
		return
	}
	want := corev1.Container{
		Name:                     checkName(app.Name, takenNames(pod)),
		Image:                    app.Image,
		ImagePullPolicy:          app.ImagePullPolicy,
		Command:                  cmd,
		WorkingDir:               app.WorkingDir,
		Env:                      env,
		EnvFrom:                  deepCopyEnvFrom(app.EnvFrom),
		VolumeMounts:             mounts,
		Resources:                *e.policy.Checks.Resources.DeepCopy(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
	}
	if app.SecurityContext != nil {
		want.SecurityContext = app.SecurityContext.DeepCopy()
	}
	pod.Spec.InitContainers = append(pod.Spec.InitContainers, want)
}

// upsertEach makes every element of want present in have: an element of have that is the same (by same) is
// replaced by want's when they differ, and the rest of want is appended. Elements only have has (another
// mutator's) stay, in order. Each element of have is matched at most once, so duplicates in an invalid pod
// still converge on one pass.
func upsertEach[T any](have, want []T, same func(a, b *T) bool) []T {
	var used []bool
	for i := range want {
		found := false
		for j := range have {
			if (used == nil || !used[j]) && same(&have[j], &want[i]) {
				if used == nil {
					used = make([]bool, len(have), len(have)+len(want))
				}
				used[j], found = true, true
				if !equality.Semantic.DeepEqual(have[j], want[i]) {
					have[j] = want[i]
				}
				break
			}
		}
		if !found {
			have = append(have, want[i])
			if used != nil {
				used = append(used, true)
			}
		}
	}
	return have
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

// Record entry markers (see AnnotationInjected).
const (
	recordKept    = "(kept)"
	recordSkipped = "-"
)

// record writes the lastcall.dev/injected and lastcall.dev/version annotations, unless they would push the
// pod over the API server's total annotation size: then the pod is injected without them (a pod must never
// become inadmissible because of lastcall) and a warning says so.
func (e *Engine) record(pod *corev1.Pod, res *Result) {
	var b strings.Builder
	for i := range res.Containers {
		d := &res.Containers[i]
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(d.Container)
		b.WriteByte('=')
		switch {
		case d.Skip != nil:
			b.WriteString(recordSkipped)
		case d.Rendering == RenderKeptExisting:
			b.WriteString(d.Profile)
			b.WriteString(recordKept)
		default:
			b.WriteString(d.Profile)
		}
	}
	value := b.String()
	size := 0
	for k, v := range pod.Annotations {
		if k != AnnotationInjected && k != AnnotationVersion {
			size += len(k) + len(v)
		}
	}
	if add := len(AnnotationInjected) + len(value) + len(AnnotationVersion) + len(e.version); size+add > MaxAnnotationsSize {
		delete(pod.Annotations, AnnotationInjected)
		delete(pod.Annotations, AnnotationVersion)
		res.Warnings = append(res.Warnings, fmt.Sprintf("lastcall: the pod's annotations take %d bytes; the record %s and %s (%d bytes) would pass the API server's limit of %d, so they are left out (the shutdown is still injected)", size, AnnotationInjected, AnnotationVersion, add, MaxAnnotationsSize))
		return
	}
	if pod.Annotations == nil {
		pod.Annotations = make(map[string]string, 2)
	}
	pod.Annotations[AnnotationInjected] = value
	pod.Annotations[AnnotationVersion] = e.version
}

// recordEntry returns the value the record gives container name, without allocating.
func recordEntry(record, name string) (string, bool) {
	for record != "" {
		var entry string
		entry, record, _ = strings.Cut(record, ",")
		if n, v, ok := strings.Cut(entry, "="); ok && n == name {
			return v, true
		}
	}
	return "", false
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
