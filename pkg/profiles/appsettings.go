package profiles

import (
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"
)

// AppTimeout names the server's own command-line settings that bound how long it waits for in-flight work
// after the graceful signal. When a container's command states one, that is what the server will really wait,
// so the drain timeout (and with it the grace period) follows it instead of the profile's default: a Sidekiq
// started with -t 60 under the 25s profile would be SIGKILLed in the middle of a job.
type AppTimeout struct {
	// Programs are globs for the basename of the program the flags belong to (see Program). The flags are
	// read only when the container runs one of them, or when its program is unknown (no command, args only).
	Programs []string
	// Hard flags bound the wait; when one is set it wins over every soft flag.
	Hard []string
	// Soft flags are used only when no hard flag is set (celery's --soft-time-limit: the task is asked to stop
	// then, and normally does).
	Soft []string
}

// Wrapper is a launcher script a profile claims that does not exec the server: apache2ctl runs apache2 as its
// child, so PID 1 is a shell that ignores SIGWINCH. The graceful signal must then go to the server by name.
type Wrapper struct {
	// Command is a glob for the launcher's basename (see Program).
	Command string
	// Target is the server's process name (its /proc/PID/comm), as `lastcall-shim prestop --target name:` takes it.
	Target string
	// ImageTargets overrides Target by image name: the same launcher starts httpd in the official httpd image
	// and apache2 in Debian's.
	ImageTargets []ImageTarget
}

// ImageTarget is a Target for images whose repository name matches Image (a glob on the last path segment).
type ImageTarget struct {
	Image  string
	Target string
}

// TimeoutFromCommand returns the drain timeout the container's command states through the profile's
// AppTimeout flags, and a sentence saying where it came from. ok is false when the command states none.
// The value is clamped to the profile limits (1s to 1h), and the sentence says so.
func (p *Profile) TimeoutFromCommand(command, args []string) (d time.Duration, source string, ok bool) {
	t := p.Timeout
	if t == nil || (len(t.Hard) == 0 && len(t.Soft) == 0) {
		return 0, "", false
	}
	if prog := Program(command, args); prog != "" && !matchAny(t.Programs, prog) {
		return 0, "", false
	}
	hard, hardFlag, hardOK := lastFlag(t.Hard, command, args)
	soft, softFlag, softOK := lastFlag(t.Soft, command, args)
	switch {
	case hardOK:
		d, source = hard, hardFlag
		if softOK {
			source += " (the hard limit; " + softFlag + " is only the soft one)"
		}
	case softOK:
		d, source = soft, softFlag
	default:
		return 0, "", false
	}
	switch {
	case d < MinDrainTimeout:
		d, source = MinDrainTimeout, source+", raised to the minimum "+MinDrainTimeout.String()
	case d > MaxDrainTimeout:
		d, source = MaxDrainTimeout, source+", capped at the maximum "+MaxDrainTimeout.String()
	}
	return d, "the command's " + source, true
}

// lastFlag finds the last of flags in command+args (the kubelet appends args to the command; the last
// occurrence wins for every parser these servers use). Values are seconds, possibly fractional.
func lastFlag(flags []string, command, args []string) (time.Duration, string, bool) {
	var found string
	var val float64
	ok := false
	scan := func(words []string) {
		for i, w := range words {
			for _, f := range flags {
				v, hit := "", false
				switch {
				case w == f && i+1 < len(words):
					v, hit = words[i+1], true
				case strings.HasPrefix(w, f+"="):
					v, hit = w[len(f)+1:], true
				case len(f) == 2 && f[0] == '-' && f[1] != '-' && len(w) > 2 && strings.HasPrefix(w, f) && w[2] >= '0' && w[2] <= '9':
					v, hit = w[2:], true // -t60, as OptionParser and getopt accept
				}
				if !hit {
					continue
				}
				n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil || n < 0 || math.IsNaN(n) || math.IsInf(n, 0) || n > 1e7 {
					continue // not a number of seconds: the server would refuse it too; keep the profile's value
				}
				found, val, ok = fmt.Sprintf("%s %s", f, v), n, true
			}
		}
	}
	scan(command)
	scan(args)
	return time.Duration(val * float64(time.Second)), found, ok
}

// WrapperTarget returns the process the graceful signal must reach when the container's entrypoint is one of
// the profile's non-exec wrappers, and the wrapper's name. ok is false for every other entrypoint.
func (p *Profile) WrapperTarget(image string, command, args []string) (target, wrapper string, ok bool) {
	if len(p.Wrappers) == 0 {
		return "", "", false
	}
	prog := Program(command, args)
	if prog == "" {
		return "", "", false
	}
	name, _ := imageName(image)
	for _, w := range p.Wrappers {
		if m, _ := path.Match(w.Command, prog); !m {
			continue
		}
		target = w.Target
		for _, it := range w.ImageTargets {
			if m, _ := path.Match(it.Image, name); m {
				target = it.Target
				break
			}
		}
		return target, prog, true
	}
	return "", "", false
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if m, _ := path.Match(p, s); m {
			return true
		}
	}
	return false
}
