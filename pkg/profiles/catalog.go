package profiles

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// Catalog is an immutable set of profiles, safe for concurrent use. The webhook swaps whole catalogs when
// ShutdownProfiles change, so admission never sees a half-updated set.
type Catalog struct {
	byName map[string]*Profile
	// order is the detection order: cluster profiles first (they are specific to this cluster), then built-ins.
	order []*Profile
}

func (c *Catalog) add(p *Profile) {
	if old, ok := c.byName[p.Name]; ok {
		for i, q := range c.order {
			if q == old {
				c.order = append(c.order[:i], c.order[i+1:]...)
				break
			}
		}
	}
	c.byName[p.Name] = p
	c.order = append(c.order, p)
}

// Get returns the named profile.
func (c *Catalog) Get(name string) (*Profile, bool) {
	p, ok := c.byName[name]
	return p, ok
}

// Names returns every profile name, sorted.
func (c *Catalog) Names() []string {
	out := make([]string, 0, len(c.byName))
	for n := range c.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// All returns the profiles in detection order.
func (c *Catalog) All() []*Profile { return append([]*Profile(nil), c.order...) }

// Detection is the outcome of auto-detection: the profile and the rule that matched, for explain output.
type Detection struct {
	Profile *Profile
	Rule    string // e.g. `image "nginx"` or `command "php-fpm*"`
}

// Detect finds the first profile whose match rules fit the image or the program. It returns a zero
// Detection when nothing matches.
func (c *Catalog) Detect(image string, command, args []string) Detection {
	name, nameTag := imageName(image)
	prog := Program(command, args)
	for _, p := range c.order {
		for _, pat := range p.Match.Images {
			subject := name
			if strings.IndexByte(pat, ':') >= 0 {
				subject = nameTag
			}
			if ok, _ := path.Match(pat, subject); ok {
				return Detection{Profile: p, Rule: fmt.Sprintf("image %q matches %q", image, pat)}
			}
		}
		if prog == "" {
			continue
		}
		for _, pat := range p.Match.Commands {
			if ok, _ := path.Match(pat, prog); ok {
				return Detection{Profile: p, Rule: fmt.Sprintf("command %q matches %q", prog, pat)}
			}
		}
	}
	return Detection{}
}

// imageName returns the last path segment of the image repository, and that segment with its tag
// ("php:8.3-fpm"; without a tag, "php:latest"). Digests are ignored.
func imageName(image string) (name, nameTag string) {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndexByte(image, '/'); i >= 0 {
		image = image[i+1:]
	}
	if i := strings.IndexByte(image, ':'); i >= 0 {
		return image[:i], image
	}
	return image, image + ":latest"
}

// Program returns the basename of the program a container runs, looking through the launchers people put in
// front of servers: `python -m gunicorn`, `bundle exec sidekiq`, `exec`, `dumb-init`/`tini --`. It looks at
// command first and at args when command is empty (the image's entrypoint is unknown to the webhook).
func Program(command, args []string) string {
	words := command
	if len(words) == 0 {
		words = args
	}
	for i := 0; i < len(words); i++ {
		w := base(words[i])
		switch {
		case w == "exec" || w == "dumb-init" || w == "tini" || w == "--" || w == "env":
			continue
		case strings.HasPrefix(w, "python"):
			for j := i + 1; j+1 < len(words); j++ {
				if words[j] == "-m" {
					return base(words[j+1])
				}
			}
			return w
		case w == "bundle" && i+2 < len(words) && words[i+1] == "exec":
			i++
			continue
		case strings.HasPrefix(w, "-"):
			return ""
		default:
			return w
		}
	}
	return ""
}

func base(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// Override is a cluster-defined profile (a ShutdownProfile). Nil fields inherit from the built-in of the same
// name; a new name inherits from nothing and must set StopSignal.
type Override struct {
	Name         string
	Description  string
	DrainDelay   *time.Duration
	StopSignal   string
	DrainTimeout *time.Duration
	Checks       []string
	Match        *Match
	Supervise    *bool
	// Role is proxy, upstream, worker or other; empty inherits (other for a new name).
	Role   string
	Source string
}

// Layer returns a new catalog with the overrides applied over c. Each invalid override is left out and
// reported (keyed by name), so one bad ShutdownProfile never takes the others down.
func (c *Catalog) Layer(overrides []Override) (*Catalog, map[string]error) {
	out := &Catalog{byName: make(map[string]*Profile, len(c.byName)+len(overrides))}
	for _, p := range c.order {
		out.add(p)
	}
	errs := map[string]error{}
	// Cluster profiles go first in detection order, sorted by name so the order never depends on informer timing.
	sorted := append([]Override(nil), overrides...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var cluster []*Profile
	for _, o := range sorted {
		p, err := c.apply(o)
		if err != nil {
			errs[o.Name] = err
			continue
		}
		cluster = append(cluster, p)
	}
	for _, p := range cluster {
		out.add(p)
	}
	// add() appended cluster profiles last; move them to the front for detection.
	n := len(cluster)
	out.order = append(out.order[len(out.order)-n:], out.order[:len(out.order)-n]...)
	return out, errs
}

func (c *Catalog) apply(o Override) (*Profile, error) {
	var p Profile
	if base, ok := c.byName[o.Name]; ok {
		p = *base
		p.Source = o.Source + " (overrides built-in)"
	} else {
		p = Profile{Name: o.Name, DrainTimeout: 30 * time.Second, Role: RoleOther, Source: o.Source}
		if o.StopSignal == "" {
			return nil, fmt.Errorf("stopSignal: required for a profile that does not override a built-in")
		}
	}
	if o.Description != "" {
		p.Description = o.Description
	}
	if o.DrainDelay != nil {
		p.DrainDelay = *o.DrainDelay
	}
	if o.DrainTimeout != nil {
		p.DrainTimeout = *o.DrainTimeout
	}
	if o.StopSignal != "" {
		sig, err := ParseSignal(o.StopSignal)
		if err != nil {
			return nil, fmt.Errorf("stopSignal: %w", err)
		}
		p.StopSignal = sig
	}
	if o.Checks != nil {
		p.Checks = make([]Check, len(o.Checks))
		for i, ch := range o.Checks {
			p.Checks[i] = Check(ch)
		}
	}
	if o.Match != nil {
		p.Match = *o.Match
	}
	if o.Supervise != nil {
		p.Supervise = *o.Supervise
	}
	if o.Role != "" {
		r, err := ParseRole(o.Role)
		if err != nil {
			return nil, fmt.Errorf("role: %w", err)
		}
		p.Role = r
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}
