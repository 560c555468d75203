package shim

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const fpmConfFmt = `[global]
pid = %[1]s/php-fpm.pid
error_log = %[1]s/php-fpm.log
daemonize = no
process_control_timeout = %[2]s
[www]
listen = 127.0.0.1:%[3]d
pm = static
pm.max_children = %[4]d
`

// slowPHP runs until the test creates the release file. It loops on that condition, never on one sleep:
// php-fpm's SIGQUIT interrupts usleep(), and a request that "finished" early would make a broken configuration
// look graceful. It leaves a marker when it starts, so the test knows every request is running.
const slowPHPFmt = `<?php
touch(%[1]q . '/started-' . getmypid() . '-' . uniqid());
$end = microtime(true) + %[3]f;
while (microtime(true) < $end) {
	clearstatcache();
	if (file_exists(%[2]q)) { break; }
	usleep(10000);
}
echo "done\n";
`

// writeFPMConf writes a php-fpm config with process_control_timeout pct and returns its path and port.
func writeFPMConf(t *testing.T, dir, pct string) (string, int) {
	t.Helper()
	port := freePort(t)
	conf := filepath.Join(dir, "php-fpm.conf")
	writeFile(t, conf, fmt.Sprintf(fpmConfFmt, dir, pct, port, inflight+2))
	return conf, port
}

// runFPMShutdown starts php-fpm as PID 1 of a PID namespace, puts K requests in flight and runs
// `lastcall-shim prestop --signal QUIT` inside the namespace; it returns how many in-flight requests completed.
func runFPMShutdown(t *testing.T, pct string) (completed int, errs []string) {
	tools := requireReal(t, "php-fpm|php-fpm8.2|php-fpm8.3|php-fpm8.4", "unshare", "nsenter")
	dir := t.TempDir()
	conf, port := writeFPMConf(t, dir, pct)
	markers := filepath.Join(dir, "markers")
	if err := os.Mkdir(markers, 0o777); err != nil {
		t.Fatal(err)
	}
	slow := filepath.Join(dir, "slow.php")
	releaseFile := filepath.Join(dir, "release")
	writeFile(t, slow, fmt.Sprintf(slowPHPFmt, markers, releaseFile, serveTimeout.Seconds()))
	fast := filepath.Join(dir, "fast.php")
	writeFile(t, fast, "<?php echo \"ok\\n\";\n")
	// -R: the test runs as root and the pool has no user; -F: stay in the foreground as the namespace's PID 1.
	ns := startInPIDNS(t, os.Environ(), tools["php-fpm"], "-R", "-F", "-y", conf)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, readyBound, "php-fpm to serve", func() bool {
		out, err := fcgiGet(addr, fast, time.Second)
		return err == nil && bytes.Contains(out, []byte("ok"))
	})

	var mu sync.Mutex
	var wg sync.WaitGroup
	var lastDone time.Time
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := fcgiGet(addr, slow, serveTimeout)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && bytes.Contains(out, []byte("done")) {
				// Only a completed request must end before the hook returns: one php-fpm cut ends when the
				// reset reaches the client, which races with the hook seeing php-fpm exit (seen in CI, same ms).
				lastDone = time.Now()
				completed++
			} else {
				errs = append(errs, fmt.Sprintf("%v (output %q)", err, out))
			}
		}()
	}
	waitFor(t, 5*time.Second, fmt.Sprintf("%d PHP requests running", inflight), func() bool {
		e, _ := os.ReadDir(markers)
		return len(e) == inflight
	})
	hook := startHook(t, ns.nsenter(shimArgv(t, "prestop", "--delay", "200ms", "--signal", "QUIT", "--timeout", "10s")...))
	afterSignal(hook, releaseAfter, func() { os.WriteFile(releaseFile, nil, 0o644) }) // no t: may run after the test
	wg.Wait()
	hook.wait(t, hookBound)
	if !ns.exitedWithin(5 * time.Second) {
		t.Fatalf("php-fpm still running 5s after the hook returned; hook stdout:\n%s", hook.stdout)
	}
	if hook.ended.Before(lastDone) {
		t.Errorf("hook returned at %s, before the last completed request ended at %s", hook.ended.Format(time.StampMilli), lastDone.Format(time.StampMilli))
	}
	want := "lastcall: SIGQUIT sent to php-fpm8.2 (pid 1) after 200ms; the kubelet reports this hook as failed when php-fpm8.2 exits: expected"
	if name := filepath.Base(tools["php-fpm"]); name != "php-fpm8.2" {
		want = strings.ReplaceAll(want, "php-fpm8.2", name)
	}
	if !strings.Contains(hook.stdout.String(), want) {
		t.Errorf("hook stdout lacks %q:\n%s", want, hook.stdout)
	}
	t.Logf("process_control_timeout=%s: %d/%d in-flight requests completed, failures %v; php-fpm exited ~%s after the signal; hook %s, output:\n%s%s",
		pct, completed, inflight, errs, ns.exited.Sub(hook.stdout.signalled()).Round(time.Millisecond), hook.status(), hook.stdout, hook.stderr)
	return completed, errs
}

func TestPHPFPMQuitWithProcessControlTimeoutFinishesRequests(t *testing.T) {
	t.Parallel()
	completed, errs := runFPMShutdown(t, "20s")
	if completed != inflight {
		t.Errorf("process_control_timeout=20s: %d/%d in-flight requests completed, want all; failures: %v", completed, inflight, errs)
	}
}

func TestPHPFPMQuitWithoutProcessControlTimeoutCutsRequests(t *testing.T) {
	t.Parallel()
	completed, _ := runFPMShutdown(t, "0")
	// With 0 the master follows SIGQUIT to its workers with SIGTERM within milliseconds.
	if completed > inflight/2 {
		t.Errorf("process_control_timeout=0: %d/%d in-flight requests completed; php-fpm should have cut them", completed, inflight)
	}
}
