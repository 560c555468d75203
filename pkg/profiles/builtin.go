package profiles

import "time"

// Reserved profile names in annotations.
const (
	// NameAuto asks for auto-detection (the default when no annotation is set).
	NameAuto = "auto"
	// NameNone switches lastcall off for a container.
	NameNone = "none"
	// NameHTTP is the cluster default when nothing else matches.
	NameHTTP = "http"
)

const s = time.Second

// builtins is the catalog that works with zero configuration. The order is the detection order. Each entry's
// signal and timeout come from the server's documentation (Docs); docs/profiles.md explains them.
var builtins = []Profile{
	{
		Name: "nginx", Role: RoleProxy, DrainDelay: 5 * s, StopSignal: SIGQUIT, DrainTimeout: 25 * s,
		Description: "nginx: SIGQUIT is the graceful shutdown; SIGTERM is nginx's fast shutdown and drops connections",
		Match:       Match{Images: []string{"nginx", "nginx-unprivileged", "openresty"}, Commands: []string{"nginx", "openresty"}},
		Docs:        "https://nginx.org/en/docs/control.html",
	},
	{
		Name: "php-fpm", Role: RoleUpstream, DrainDelay: 5 * s, StopSignal: SIGQUIT, DrainTimeout: 30 * s,
		Description: "php-fpm: SIGQUIT finishes requests, but only when process_control_timeout > 0",
		Checks:      []Check{CheckPHPFPMProcessControlTimeout},
		Match:       Match{Images: []string{"php:*fpm*", "php-fpm*"}, Commands: []string{"php-fpm*"}},
		Docs:        "https://www.php.net/manual/en/install.fpm.configuration.php",
	},
	{
		Name: "apache-httpd", Role: RoleProxy, DrainDelay: 5 * s, StopSignal: SIGWINCH, DrainTimeout: 25 * s,
		Description: "Apache httpd: SIGWINCH is graceful-stop; SIGTERM aborts in-flight requests",
		Match:       Match{Images: []string{"httpd", "apache2"}, Commands: []string{"httpd", "httpd-foreground", "apache2", "apache2ctl", "apachectl"}},
		// apache2ctl and apachectl are shell scripts that run the server without exec: PID 1 is sh.
		Wrappers: []Wrapper{
			{Command: "apache2ctl", Target: "apache2"},
			{Command: "apachectl", Target: "apache2", ImageTargets: []ImageTarget{{Image: "httpd*", Target: "httpd"}}},
		},
		Docs: "https://httpd.apache.org/docs/2.4/stopping.html",
	},
	{
		Name: "haproxy", Role: RoleProxy, DrainDelay: 5 * s, StopSignal: SIGUSR1, DrainTimeout: 25 * s,
		Description: "HAProxy: SIGUSR1 is the soft-stop; SIGTERM is the hard stop",
		Match:       Match{Images: []string{"haproxy"}, Commands: []string{"haproxy"}},
		Docs:        "https://docs.haproxy.org/2.8/management.html#4",
	},
	{
		Name: "gunicorn", Role: RoleUpstream, DrainDelay: 5 * s, StopSignal: SIGTERM, DrainTimeout: 30 * s,
		Description: "gunicorn: SIGTERM is the graceful shutdown, bounded by graceful_timeout (30s)",
		Match:       Match{Commands: []string{"gunicorn"}},
		Timeout:     &AppTimeout{Programs: []string{"gunicorn"}, Hard: []string{"--graceful-timeout"}},
		Docs:        "https://docs.gunicorn.org/en/stable/signals.html",
	},
	{
		Name: "uvicorn", Role: RoleUpstream, DrainDelay: 5 * s, StopSignal: SIGTERM, DrainTimeout: 25 * s,
		Description: "uvicorn: SIGTERM stops accepting and waits for open requests (--timeout-graceful-shutdown)",
		Match:       Match{Commands: []string{"uvicorn"}},
		Timeout:     &AppTimeout{Programs: []string{"uvicorn"}, Hard: []string{"--timeout-graceful-shutdown"}},
		Docs:        "https://www.uvicorn.org/deployment/",
	},
	{
		Name: "celery", Role: RoleWorker, DrainDelay: 0, StopSignal: SIGTERM, DrainTimeout: 600 * s,
		Description: "Celery worker: SIGTERM is the warm shutdown (finish running tasks); not behind a load balancer",
		Match:       Match{Commands: []string{"celery"}},
		// A running task ends at its hard time limit (killed) or, usually, at its soft one (asked to stop).
		Timeout: &AppTimeout{Programs: []string{"celery"}, Hard: []string{"--time-limit"}, Soft: []string{"--soft-time-limit"}},
		Docs:    "https://docs.celeryq.dev/en/stable/userguide/workers.html#stopping-the-worker",
	},
	{
		Name: "sidekiq", Role: RoleWorker, DrainDelay: 0, StopSignal: SIGTERM, DrainTimeout: 25 * s,
		Description: "Sidekiq: SIGTERM stops fetching jobs and waits up to -t (25s) before pushing them back",
		Match:       Match{Commands: []string{"sidekiq"}},
		Timeout:     &AppTimeout{Programs: []string{"sidekiq"}, Hard: []string{"-t", "--timeout"}},
		Docs:        "https://github.com/sidekiq/sidekiq/wiki/Signals",
	},
	{
		Name: "postgres", Role: RoleOther, DrainDelay: 0, StopSignal: SIGINT, DrainTimeout: 60 * s,
		Description: "PostgreSQL: SIGINT is the fast shutdown; SIGTERM waits for every client, SIGQUIT is immediate",
		Match:       Match{Images: []string{"postgres", "postgis"}, Commands: []string{"postgres"}},
		Docs:        "https://www.postgresql.org/docs/current/server-shutdown.html",
	},
	{
		Name: NameHTTP, Role: RoleUpstream, DrainDelay: 5 * s, StopSignal: SIGTERM, DrainTimeout: 25 * s,
		Description: "generic HTTP server that drains on SIGTERM (the cluster default)",
		Docs:        "https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination",
	},
}

// Builtins returns the built-in catalog. Each call returns a fresh catalog; callers may layer over it.
func Builtins() *Catalog {
	c := &Catalog{byName: make(map[string]*Profile, len(builtins))}
	for i := range builtins {
		p := builtins[i]
		p.Source = SourceBuiltin
		c.add(&p)
	}
	return c
}

// SourceBuiltin is Profile.Source for the built-in catalog.
const SourceBuiltin = "built-in"
