package shim

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
)

// apacheConfFmt is a minimal Debian apache2 configuration: event MPM, a static file and a slow CGI script.
const apacheConfFmt = `ServerRoot %[1]s
ServerName localhost
Listen 127.0.0.1:%[2]d
PidFile %[1]s/apache2.pid
ErrorLog %[1]s/error.log
LogLevel info
Mutex file:%[1]s default
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule alias_module /usr/lib/apache2/modules/mod_alias.so
LoadModule cgid_module /usr/lib/apache2/modules/mod_cgid.so
ScriptSock %[1]s/cgid.sock
User www-data
Group www-data
StartServers 2
ThreadsPerChild 16
MaxRequestWorkers 32
DocumentRoot %[1]s/htdocs
<Directory />
  Require all granted
</Directory>
ScriptAlias /slow %[1]s/slow.cgi
`

// slowCGI runs until the release file exists, so requests are in flight however long the hook takes.
const slowCGIFmt = `#!/bin/sh
: > %[1]s/started-$$
i=0
while [ ! -f %[2]s ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
printf 'Content-Type: text/plain\r\n\r\nslow\n'
`

// apacheServer returns Debian's apache2, run directly or through `apache2ctl -DFOREGROUND` (a shell script that
// does not exec, as in Debian and Ubuntu images).
func apacheServer(t *testing.T, viaCtl bool, hookArgs ...string) slowHTTP {
	t.Helper()
	tools := requireReal(t, "apache2", "apache2ctl", "unshare", "nsenter")
	dir := t.TempDir()
	openDir(t, dir)
	port := freePort(t)
	writeFile(t, filepath.Join(dir, "apache2.conf"), fmt.Sprintf(apacheConfFmt, dir, port))
	markers, release := filepath.Join(dir, "markers"), filepath.Join(dir, "release")
	running := markerCounter(t, markers)
	writeFile(t, filepath.Join(dir, "slow.cgi"), fmt.Sprintf(slowCGIFmt, markers, release))
	if err := unix.Chmod(filepath.Join(dir, "slow.cgi"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkdir(filepath.Join(dir, "htdocs"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "htdocs", "fast"), "fast\n")
	argv := []string{tools["apache2"], "-d", dir, "-DFOREGROUND"}
	env := debianEnv(asShimEnv + "=1")
	if viaCtl {
		// apache2ctl passes unknown arguments to apache2; APACHE_CONFDIR makes it add "-d DIR".
		argv = []string{tools["apache2ctl"], "-DFOREGROUND"}
		env = append(env, "APACHE_CONFDIR="+dir)
	}
	return slowHTTP{argv: argv, env: env, addr: fmt.Sprintf("127.0.0.1:%d", port), fast: "/fast", slow: "/slow",
		running: running, release: releaseFile(release), hookArgs: hookArgs}
}

// The apache-httpd profile: SIGWINCH is graceful-stop. Every in-flight request completes, the listener is
// closed at once, and apache exits by itself when the last request is done.
func TestServerApacheHTTPDPrestopWinchKeepsInFlightRequests(t *testing.T) {
	t.Parallel()
	p := profile(t, "apache-httpd")
	r := runSlowHTTP(t, apacheServer(t, false, prestopArgs(p.StopSignal, p.DrainTimeout)...), exitBound(p))
	t.Logf("apache2 %s: %s", p.StopSignal, r.summary())
	if ok := r.inflight.Count(loadgen.OK); ok != inflight {
		t.Errorf("%s: %d/%d in-flight requests succeeded (%s), want all", p.StopSignal, ok, inflight, r.inflight.Summary())
	}
	if !r.refused {
		t.Errorf("%s: a new connection was accepted after the signal, want refused (graceful-stop closes the listener)", p.StopSignal)
	}
	if !r.exitedSelf {
		t.Errorf("%s: apache still running %s after the signal", p.StopSignal, exitBound(p))
	}
}

// The baseline: the kubelet's SIGTERM is apache's immediate stop; it aborts every in-flight request.
func TestServerApacheHTTPDBaselineTermAbortsInFlightRequests(t *testing.T) {
	t.Parallel()
	r := runSlowHTTP(t, apacheServer(t, false, prestopArgs("SIGTERM", 30*time.Second)...), 10*time.Second)
	t.Logf("apache2 SIGTERM: %s", r.summary())
	if ok := r.inflight.Count(loadgen.OK); ok != 0 {
		t.Errorf("SIGTERM: %d/%d in-flight requests succeeded (%s); want all aborted, or the baseline proves nothing", ok, inflight, r.inflight.Summary())
	}
}

// `apache2ctl -DFOREGROUND` as PID 1: PID 1 is sh, which ignores SIGWINCH (the kernel drops signals PID 1 has no
// handler for), so signalling PID 1 does nothing and apache keeps serving until the SIGKILL. Targeting the
// apache2 process itself (--target name:apache2) drains gracefully.
func TestServerApacheHTTPDUnderApache2ctl(t *testing.T) {
	t.Parallel()
	p := profile(t, "apache-httpd")
	t.Run("targeting apache2 by name drains gracefully", func(t *testing.T) {
		t.Parallel()
		args := prestopArgs(p.StopSignal, p.DrainTimeout, "--target", "name:apache2")
		r := runSlowHTTP(t, apacheServer(t, true, args...), exitBound(p))
		t.Logf("apache2ctl, %s to apache2: %s", p.StopSignal, r.summary())
		if ok := r.inflight.Count(loadgen.OK); ok != inflight {
			t.Errorf("%d/%d in-flight requests succeeded (%s), want all", ok, inflight, r.inflight.Summary())
		}
		if !r.refused || !r.exitedSelf {
			t.Errorf("new connection refused %v, exited by itself %v; want both", r.refused, r.exitedSelf)
		}
	})
	t.Run("signalling PID 1, the shell, does nothing", func(t *testing.T) {
		t.Parallel()
		args := prestopArgs(p.StopSignal, 3*time.Second) // the hook gives up after 3s; the kubelet would SIGKILL later
		r := runSlowHTTP(t, apacheServer(t, true, args...), 2*time.Second)
		t.Logf("apache2ctl, %s to PID 1: %s; hook %s", p.StopSignal, r.summary(), r.hook.status())
		if r.refused || r.exitedSelf {
			t.Errorf("new connection refused %v, exited %v: sh as PID 1 should have ignored %s, or this test proves nothing", r.refused, r.exitedSelf, p.StopSignal)
		}
		if st := r.hook.status(); st != fmt.Sprintf("exit %d", ExitTimeout) {
			t.Errorf("hook %s, want exit %d (timeout: the target never exited)", st, ExitTimeout)
		}
	})
}
