package shim

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckPHPFPM(t *testing.T) {
	t.Parallel()
	tools := requireReal(t, "php-fpm|php-fpm8.2|php-fpm8.3|php-fpm8.4")
	cases := []struct {
		name     string
		pct      string
		budget   string
		mode     string
		wantCode int
		wantOut  string // on stdout
		wantErr  string // on stderr
	}{
		{"0 is reported with the fix and passes in warn mode", "0", "30s", "warn", ExitOK, "",
			"lastcall-shim: warning: check php-fpm: php-fpm process_control_timeout is 0 (the default), so on SIGQUIT php-fpm kills in-flight requests at once; set process_control_timeout = 25s in the [global] section of CONF"},
		{"0 fails in enforce mode", "0", "30s", "enforce", ExitCheckFailed, "",
			"lastcall-shim: check php-fpm: php-fpm process_control_timeout is 0 (the default), so on SIGQUIT php-fpm kills in-flight requests at once; set process_control_timeout = 25s in the [global] section of CONF"},
		{"20s fits a 30s budget", "20s", "30s", "enforce", ExitOK,
			"lastcall-shim check php-fpm: ok: process_control_timeout = 20s fits the 30s budget (CONF)", ""},
		{"60s is too large for a 30s budget", "60s", "30s", "enforce", ExitCheckFailed, "",
			"lastcall-shim: check php-fpm: php-fpm process_control_timeout is 60s, longer than the 30s drain budget, so the kubelet kills php-fpm before slow requests finish; set process_control_timeout = 25s in the [global] section of CONF"},
		{"minutes are understood and the fix scales with the budget", "2m", "1m", "warn", ExitOK, "",
			"set process_control_timeout = 50s in the [global] section of CONF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conf, _ := writeFPMConf(t, t.TempDir(), tc.pct)
			var stdout, stderr bytes.Buffer
			code := Main([]string{"check", "php-fpm", "--budget", tc.budget, "--binary", tools["php-fpm"], "--config", conf, "--mode", tc.mode}, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.wantCode, &stderr)
			}
			for _, c := range []struct {
				name, got, want string
			}{{"stdout", stdout.String(), tc.wantOut}, {"stderr", stderr.String(), tc.wantErr}} {
				want := strings.ReplaceAll(c.want, "CONF", conf)
				if want == "" && c.got != "" || !strings.Contains(c.got, want) {
					t.Errorf("%s = %q, want it to contain %q", c.name, c.got, want)
				}
				if strings.Count(c.got, "\n") > 1 {
					t.Errorf("%s has more than one line: %q", c.name, c.got)
				}
			}
		})
	}
}

func TestCheckPHPFPMCannotRead(t *testing.T) {
	t.Parallel()
	missingConf := filepath.Join(t.TempDir(), "missing.conf")
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"a missing binary warns and passes in warn mode", []string{"--binary", "/nonexistent/php-fpm", "--mode", "warn"}, ExitOK,
			`lastcall-shim: warning: check php-fpm: php-fpm binary "/nonexistent/php-fpm": `},
		{"a missing binary fails in enforce mode", []string{"--binary", "/nonexistent/php-fpm", "--mode", "enforce"}, ExitCheckFailed,
			`lastcall-shim: check php-fpm: php-fpm binary "/nonexistent/php-fpm": `},
		{"an unreadable config warns in warn mode", []string{"--binary", "/bin/true", "--config", missingConf}, ExitOK,
			"lastcall-shim: warning: check php-fpm: cannot read php-fpm config: open " + missingConf},
		{"an unreadable config fails in enforce mode", []string{"--binary", "/bin/true", "--config", missingConf, "--mode", "enforce"}, ExitCheckFailed,
			"lastcall-shim: check php-fpm: cannot read php-fpm config: open " + missingConf},
		{"a binary that prints no setting fails in enforce mode", []string{"--binary", "/bin/true", "--mode", "enforce"}, ExitCheckFailed,
			"cannot read process_control_timeout: no process_control_timeout in its output"},
		{"a bad mode is a usage error", []string{"--mode", "strict"}, ExitUsage, `--mode must be warn or enforce, got "strict"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := Main(append([]string{"check", "php-fpm", "--budget", "30s"}, tc.args...), &stdout, &stderr)
			if code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantErr) || strings.Count(stderr.String(), "\n") != 1 {
				t.Fatalf("exit %d stderr %q; want exit %d and one line containing %q", code, &stderr, tc.wantCode, tc.wantErr)
			}
		})
	}
}

func TestCheckSuggestion(t *testing.T) {
	t.Parallel()
	for budget, want := range map[time.Duration]time.Duration{30 * time.Second: 25 * time.Second, 600 * time.Second: 500 * time.Second, time.Second: time.Second, 7 * time.Second: 5 * time.Second} {
		var r PHPFPMResult
		PHPFPMCheck{Budget: budget}.evaluate(&r)
		if r.Suggested != want || r.Problem == "" {
			t.Errorf("budget %s: suggested %s (problem %q), want %s", budget, r.Suggested, r.Problem, want)
		}
	}
}

// php-fpm lives in sbin directories that a non-root PATH (and many images' PATH) lacks; the check must find it.
func TestCheckFindsPHPFPMOutsidePATH(t *testing.T) {
	requireReal(t, "php-fpm|php-fpm8.2|php-fpm8.3|php-fpm8.4")
	t.Setenv("PATH", t.TempDir())
	conf, _ := writeFPMConf(t, t.TempDir(), "20s")
	var stdout, stderr bytes.Buffer
	code := Main([]string{"check", "php-fpm", "--budget", "30s", "--config", conf, "--mode", "enforce"}, &stdout, &stderr)
	if want := "ok: process_control_timeout = 20s fits the 30s budget"; code != ExitOK || !strings.Contains(stdout.String(), want) {
		t.Errorf("exit %d stdout %q stderr %q; want 0 and %q", code, &stdout, &stderr, want)
	}
}
