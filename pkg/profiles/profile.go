// Package profiles owns the shutdown Profile: what one kind of server needs to stop without dropping work.
// It holds the built-in catalog, validation, and the layering of cluster-defined ShutdownProfiles over it.
// Nothing here does I/O: the webhook and the CLI feed it objects they read elsewhere.
package profiles

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Role places a profile in the request path; it drives the in-pod ordering rule (an upstream next to a proxy
// is signalled after the proxy, so a request the proxy accepted last still finds its upstream listening).
type Role string

const (
	// RoleProxy accepts requests and forwards them to an upstream in the same pod (nginx, haproxy, envoy).
	RoleProxy Role = "proxy"
	// RoleUpstream serves requests a proxy forwards (php-fpm, gunicorn, a plain HTTP server).
	RoleUpstream Role = "upstream"
	// RoleWorker consumes a queue and is not behind a load balancer (celery, sidekiq).
	RoleWorker Role = "worker"
	// RoleOther is anything else (a database): never reordered.
	RoleOther Role = "other"
)

// Roles lists every role, in the order the ShutdownProfile CRD enumerates them.
var Roles = []Role{RoleProxy, RoleUpstream, RoleWorker, RoleOther}

// ParseRole accepts a role name; the empty string means RoleOther.
func ParseRole(s string) (Role, error) {
	if s == "" {
		return RoleOther, nil
	}
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q: want proxy, upstream, worker or other", s)
}

// Check names a preflight check the shim can run in an init container.
type Check string

// CheckPHPFPMProcessControlTimeout verifies php-fpm's process_control_timeout is > 0 and within the budget:
// with 0 (php-fpm's default) php-fpm kills in-flight requests even on its graceful SIGQUIT.
const CheckPHPFPMProcessControlTimeout Check = "php-fpm-process-control-timeout"

// KnownChecks lists every check the shim implements.
var KnownChecks = []Check{CheckPHPFPMProcessControlTimeout}

// Limits on profile values. They bound what a typo can do to a cluster (a 10h drain delay would hold every
// rollout) and match the ShutdownProfile CRD schema.
const (
	MaxDrainDelay   = 10 * time.Minute
	MinDrainTimeout = time.Second
	MaxDrainTimeout = time.Hour
)

// Match holds glob patterns for auto-detection. An image pattern without ':' matches the last path segment
// of the image repository ("nginx" matches "docker.io/library/nginx:1.27"); with ':' it matches "name:tag"
// ("php:*fpm*" matches "php:8.3-fpm-alpine"). A command pattern matches the basename of the program the
// container runs (see Program).
type Match struct {
	Images   []string `json:"images,omitempty"`
	Commands []string `json:"commands,omitempty"`
}

// Profile says how one kind of server stops gracefully.
type Profile struct {
	Name        string
	Description string
	// DrainDelay is how long to keep serving after termination starts, so endpoints and load balancers stop
	// sending new traffic before the server stops accepting it.
	DrainDelay time.Duration
	// StopSignal is the signal that means "finish in-flight work, then exit" for this server.
	StopSignal Signal
	// DrainTimeout is how long the server may take after the signal.
	DrainTimeout time.Duration
	Checks       []Check
	Match        Match
	// Supervise asks for the container's explicit command to run under `lastcall-shim run`.
	Supervise bool
	// Role places the server in the request path; it orders an upstream after a proxy in the same pod.
	Role Role
	// Wrappers are launcher scripts the profile's match rules claim that do not exec the server (apache2ctl):
	// PID 1 is then a shell that ignores the graceful signal, so the signal must go to the server by name.
	Wrappers []Wrapper
	// Timeout names the server's own command-line settings that bound how long it waits after the signal
	// (gunicorn --graceful-timeout): when the command states one, the drain timeout follows it.
	Timeout *AppTimeout
	// Source says where the profile comes from, for explain output: "built-in" or "ShutdownProfile/<name>".
	Source string
	// Docs cites the server's own documentation for the signal and timeout semantics.
	Docs string
}

// Validate reports every problem with the profile, each naming the field.
func (p *Profile) Validate() error {
	var errs []error
	if p.Name == "" || !isDNSLabel(p.Name) {
		errs = append(errs, fmt.Errorf("name %q: must be a DNS label (lowercase letters, digits, '-')", p.Name))
	}
	if p.Name == NameNone || p.Name == NameAuto {
		errs = append(errs, fmt.Errorf("name %q: reserved", p.Name))
	}
	if p.DrainDelay < 0 || p.DrainDelay > MaxDrainDelay {
		errs = append(errs, fmt.Errorf("drainDelay %s: must be between 0s and %s", p.DrainDelay, MaxDrainDelay))
	}
	if p.DrainTimeout < MinDrainTimeout || p.DrainTimeout > MaxDrainTimeout {
		errs = append(errs, fmt.Errorf("drainTimeout %s: must be between %s and %s", p.DrainTimeout, MinDrainTimeout, MaxDrainTimeout))
	}
	if _, err := ParseRole(string(p.Role)); err != nil {
		errs = append(errs, fmt.Errorf("role: %w", err))
	}
	if _, err := ParseSignal(string(p.StopSignal)); err != nil {
		errs = append(errs, fmt.Errorf("stopSignal: %w", err))
	}
	for i, c := range p.Checks {
		if !isKnownCheck(c) {
			errs = append(errs, fmt.Errorf("checks[%d] %q: unknown check (known: %s)", i, c, CheckPHPFPMProcessControlTimeout))
		}
	}
	for i, m := range p.Match.Images {
		if err := validPattern(m); err != nil {
			errs = append(errs, fmt.Errorf("match.images[%d] %q: %w", i, m, err))
		}
	}
	for i, m := range p.Match.Commands {
		if err := validPattern(m); err != nil {
			errs = append(errs, fmt.Errorf("match.commands[%d] %q: %w", i, m, err))
		}
	}
	return errors.Join(errs...)
}

func validPattern(p string) error {
	if strings.TrimSpace(p) == "" {
		return errors.New("empty pattern")
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("bad glob: %w", err)
	}
	return nil
}

func isKnownCheck(c Check) bool {
	for _, k := range KnownChecks {
		if k == c {
			return true
		}
	}
	return false
}

func isDNSLabel(s string) bool {
	if len(s) > 63 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return s != ""
}
