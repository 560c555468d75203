package shim

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallIsAtomicAndIdempotent(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, src, strings.Repeat("lastcall-shim binary\n", 1000))
	dir := filepath.Join(t.TempDir(), "bin")
	// An older, shorter binary is already there (a restarted init container): it must be replaced whole.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, BinaryName), "old")
	for i := range 2 {
		dest, size, err := Installer{Source: src}.Install(dir)
		if err != nil {
			t.Fatalf("install #%d: %v", i+1, err)
		}
		want, _ := os.ReadFile(src)
		got, _ := os.ReadFile(dest)
		st, _ := os.Stat(dest)
		if !bytes.Equal(got, want) || size != int64(len(want)) || st.Mode().Perm() != 0o755 {
			t.Fatalf("install #%d: %s has %d bytes (reported %d), mode %v; want a 0755 copy of %d bytes", i+1, dest, len(got), size, st.Mode().Perm(), len(want))
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Fatalf("install #%d left %d entries in %s, want only %s", i+1, len(entries), dir, BinaryName)
		}
	}
}

func TestInstallFailsCleanly(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := Main([]string{"install"}, &stdout, &stderr)
	if code != ExitUsage || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("install without DIR: exit %d stderr %q, want %d and one line", code, &stderr, ExitUsage)
	}
	stderr.Reset()
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, "")
	code = Main([]string{"install", filepath.Join(file, "sub")}, &stdout, &stderr)
	if code != ExitFailure || !strings.HasPrefix(stderr.String(), "lastcall-shim: install: create ") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("install into a path below a file: exit %d stderr %q, want %d and one 'install: create' line", code, &stderr, ExitFailure)
	}
}

// TestInstallReadOnlyRootAsNonRoot reproduces the init container: read-only root filesystem, uid 65532, only the
// emptyDir writable. It runs install twice there, then the installed copy.
func TestInstallReadOnlyRootAsNonRoot(t *testing.T) {
	t.Parallel()
	requireReal(t, "unshare", "setpriv")
	work := t.TempDir()
	for _, d := range []string{work, filepath.Dir(work)} {
		if err := os.Chmod(d, 0o755); err != nil { // t.TempDir is 0700: uid 65532 must reach the binary
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(work, "shim")
	copyFile(t, exe, bin, 0o755)
	vol := filepath.Join(work, "vol") // the emptyDir
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	asUser := "setpriv --reuid 65532 --regid 65532 --clear-groups"
	script := strings.Join([]string{
		"set -e",
		fmt.Sprintf("mount -t tmpfs -o mode=0777 vol %s", vol),
		"mount -o remount,bind,ro /",
		fmt.Sprintf("if %s touch %s/probe 2>/dev/null; then echo 'root filesystem is writable'; exit 1; fi", asUser, work),
		fmt.Sprintf("%s %s install %s", asUser, bin, vol),
		fmt.Sprintf("%s %s install %s", asUser, bin, vol),
		fmt.Sprintf("stat -c '%%a %%u' %s/lastcall-shim", vol),
		fmt.Sprintf("%s %s/lastcall-shim version", asUser, vol),
	}, "\n")
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = shimEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{"installed " + vol + "/lastcall-shim (", "installed " + vol + "/lastcall-shim (", "755 65532", "lastcall-shim v"}
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s\nwant %d lines", out, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i+1, lines[i], w)
		}
	}
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkInstall copies a 4 MB file (the binary size bar) the way install does, fsyncs included.
func BenchmarkInstall(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src")
	if err := os.WriteFile(src, bytes.Repeat([]byte{0x7f}, 4<<20), 0o755); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	for b.Loop() {
		if _, _, err := (Installer{Source: src}).Install(dir); err != nil {
			b.Fatal(err)
		}
	}
}
