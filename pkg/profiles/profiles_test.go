package profiles_test

import (
	"strings"
	"testing"
	"time"

	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

func TestParseSignal(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]profiles.Signal{"SIGQUIT": profiles.SIGQUIT, "QUIT": profiles.SIGQUIT, "quit": profiles.SIGQUIT, " winch ": profiles.SIGWINCH, "3": profiles.SIGQUIT, "15": profiles.SIGTERM} {
		if got, err := profiles.ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "SIGKILL", "9", "KILL", "SIGSTOPP", "-1"} {
		if _, err := profiles.ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) accepted a signal no server stops gracefully on", bad)
		}
	}
}

func TestBuiltinsMatchTheDesignTable(t *testing.T) {
	t.Parallel()
	want := map[string]struct {
		delay, timeout time.Duration
		sig            profiles.Signal
	}{
		"http": {5 * time.Second, 25 * time.Second, profiles.SIGTERM}, "nginx": {5 * time.Second, 25 * time.Second, profiles.SIGQUIT},
		"php-fpm": {5 * time.Second, 30 * time.Second, profiles.SIGQUIT}, "apache-httpd": {5 * time.Second, 25 * time.Second, profiles.SIGWINCH},
		"haproxy": {5 * time.Second, 25 * time.Second, profiles.SIGUSR1}, "gunicorn": {5 * time.Second, 30 * time.Second, profiles.SIGTERM},
		"uvicorn": {5 * time.Second, 25 * time.Second, profiles.SIGTERM}, "celery": {0, 600 * time.Second, profiles.SIGTERM},
		"sidekiq": {0, 25 * time.Second, profiles.SIGTERM}, "postgres": {0, 60 * time.Second, profiles.SIGINT},
	}
	c := profiles.Builtins()
	if len(c.Names()) != len(want) {
		t.Fatalf("catalog has %v, want %d profiles", c.Names(), len(want))
	}
	for name, w := range want {
		p, ok := c.Get(name)
		if !ok {
			t.Fatalf("no built-in %s", name)
		}
		if p.DrainDelay != w.delay || p.DrainTimeout != w.timeout || p.StopSignal != w.sig {
			t.Errorf("%s = %s/%s/%s, want %s/%s/%s", name, p.DrainDelay, p.StopSignal, p.DrainTimeout, w.delay, w.sig, w.timeout)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("built-in %s is invalid: %v", name, err)
		}
		if p.Docs == "" || p.Description == "" {
			t.Errorf("built-in %s lacks docs or description", name)
		}
	}
}

func TestDetect(t *testing.T) {
	t.Parallel()
	c := profiles.Builtins()
	tests := []struct {
		image         string
		command, args []string
		want          string
	}{
		{"docker.io/library/nginx:1.27@sha256:abc", nil, nil, "nginx"},
		{"registry:5000/nginxinc/nginx-unprivileged", nil, nil, "nginx"},
		{"php:8.3-fpm-alpine", nil, nil, "php-fpm"},
		{"php:8.3-cli", nil, nil, ""},
		{"python:3.12", []string{"python3", "-m", "gunicorn", "app:app"}, nil, "gunicorn"},
		{"python:3.12", []string{"/usr/bin/tini", "--", "celery", "-A", "x", "worker"}, nil, "celery"},
		{"ruby:3", []string{"bundle", "exec", "sidekiq"}, nil, "sidekiq"},
		{"example/app", nil, []string{"uvicorn", "main:app"}, "uvicorn"},
		{"example/app", nil, []string{"--port", "80"}, ""},
		{"registry.example.com:5000/edge", []string{"/usr/sbin/php-fpm8.2", "-F"}, nil, "php-fpm"},
	}
	for _, tt := range tests {
		got := c.Detect(tt.image, tt.command, tt.args)
		name := ""
		if got.Profile != nil {
			name = got.Profile.Name
		}
		if name != tt.want {
			t.Errorf("Detect(%q, %q, %q) = %q (%s), want %q", tt.image, tt.command, tt.args, name, got.Rule, tt.want)
		}
	}
}

func TestLayer(t *testing.T) {
	t.Parallel()
	d := 9 * time.Second
	long := 2 * time.Hour
	c, errs := profiles.Builtins().Layer([]profiles.Override{
		{Name: "nginx", DrainDelay: &d, Source: "ShutdownProfile/nginx"},
		{Name: "envoy", StopSignal: "TERM", Match: &profiles.Match{Images: []string{"envoy"}}, Source: "ShutdownProfile/envoy"},
		{Name: "no-signal", Source: "ShutdownProfile/no-signal"},
		{Name: "too-long", StopSignal: "SIGTERM", DrainTimeout: &long},
		{Name: "Bad_Name", StopSignal: "SIGTERM"},
	})
	if p, _ := c.Get("nginx"); p.DrainDelay != d || p.StopSignal != profiles.SIGQUIT || !strings.Contains(p.Source, "overrides built-in") {
		t.Errorf("nginx override = %+v", p)
	}
	if det := c.Detect("envoyproxy/envoy:v1", nil, nil); det.Profile == nil || det.Profile.Name != "envoy" {
		t.Errorf("cluster profile envoy not detected: %+v", det)
	}
	for name, field := range map[string]string{"no-signal": "stopSignal", "too-long": "drainTimeout", "Bad_Name": "name"} {
		if err := errs[name]; err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("override %s: error %v does not name %s", name, err, field)
		}
		if _, ok := c.Get(name); ok {
			t.Errorf("invalid override %s is in the catalog", name)
		}
	}
	if _, ok := profiles.Builtins().Get("envoy"); ok {
		t.Error("Layer modified the catalog it was called on")
	}
}
