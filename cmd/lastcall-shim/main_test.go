package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// maxBinarySize is the shim's size bar (docs/design.md#bars): the init container copies the binary into every pod that needs it.
const maxBinarySize = 4 << 20

const testVersion = "v9.9.9-test"

var (
	buildOnce sync.Once
	built     string
	buildErr  string
)

// buildShim builds lastcall-shim exactly as the Makefile does (static, stripped, version set with -X).
func buildShim(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			buildErr = "go not on PATH"
			return
		}
		dir, err := os.MkdirTemp("", "lastcall-shim-build-")
		if err != nil {
			buildErr = err.Error()
			return
		}
		out := filepath.Join(dir, "lastcall-shim")
		cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags",
			"-s -w -X github.com/lastcall-dev/lastcall/pkg/version.Version="+testVersion, "-o", out, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = err.Error() + ": " + string(b)
			return
		}
		built = out
	})
	if buildErr != "" {
		if os.Getenv("LASTCALL_REQUIRE_REAL") == "1" {
			tb.Fatalf("build lastcall-shim: %s", buildErr)
		}
		tb.Skipf("cannot build lastcall-shim: %s", buildErr)
	}
	return built
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built != "" {
		os.RemoveAll(filepath.Dir(built))
	}
	os.Exit(code)
}

func TestBinaryIsSmallAndStatic(t *testing.T) {
	bin := buildShim(t)
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lastcall-shim: %d bytes (%.2f MiB)", st.Size(), float64(st.Size())/(1<<20))
	if st.Size() > maxBinarySize {
		t.Errorf("lastcall-shim is %d bytes, over the %d byte bar", st.Size(), maxBinarySize)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("lastcall-shim has an ELF interpreter: it is dynamically linked and will not run in distroless images")
		}
	}
}

func TestCommandLine(t *testing.T) {
	bin := buildShim(t)
	cases := []struct {
		args     []string
		wantCode int
		stdout   string // prefix
		stderr   string // the whole of stderr (one line) when wantCode != 0
	}{
		{[]string{"version"}, 0, "lastcall-shim " + testVersion + "\n", ""},
		{[]string{"--help"}, 0, "lastcall-shim: graceful shutdown helper", ""},
		{[]string{"install", "--help"}, 0, "Usage: lastcall-shim install DIR", ""},
		{[]string{"prestop", "--help"}, 0, "Usage: lastcall-shim prestop", ""},
		{[]string{"run", "--help"}, 0, "Usage: lastcall-shim run", ""},
		{[]string{"check", "--help"}, 0, "Usage: lastcall-shim check php-fpm", ""},
		{[]string{"check", "php-fpm", "--help"}, 0, "Usage: lastcall-shim check php-fpm", ""},
		{[]string{}, 2, "", "lastcall-shim: missing command (see lastcall-shim --help)\n"},
		{[]string{"install", "a", "b"}, 2, "", "lastcall-shim: install: want exactly one argument DIR, got 2\n"},
		{[]string{"frobnicate"}, 2, "", "lastcall-shim: unknown command \"frobnicate\" (see lastcall-shim --help)\n"},
		{[]string{"check", "mysql"}, 2, "", "lastcall-shim: check: unknown check \"mysql\" (known: php-fpm)\n"},
		{[]string{"prestop", "--signal", "SIGNOPE"}, 2, "", "lastcall-shim: prestop: --signal: unknown signal \"SIGNOPE\"\n"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(append([]string{"lastcall-shim"}, tc.args...), " "), func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.wantCode, stderr.String())
			}
			if !strings.HasPrefix(stdout.String(), tc.stdout) {
				t.Errorf("stdout %q, want prefix %q", stdout.String(), tc.stdout)
			}
			if tc.wantCode != 0 && stderr.String() != tc.stderr {
				t.Errorf("stderr %q, want exactly %q", stderr.String(), tc.stderr)
			}
			if tc.wantCode == 0 && strings.Contains(tc.args[len(tc.args)-1], "help") && !strings.Contains(stdout.String(), "Exit codes:") {
				t.Errorf("--help does not document the exit codes:\n%s", stdout.String())
			}
		})
	}
}

// BenchmarkInstallExec measures what the init container does: start the static binary and install it.
func BenchmarkInstallExec(b *testing.B) {
	bin := buildShim(b)
	dir := b.TempDir()
	for b.Loop() {
		if out, err := exec.Command(bin, "install", dir).CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
}
