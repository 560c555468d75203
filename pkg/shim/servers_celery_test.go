package shim

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	celeryTasks    = 2                // K tasks running when the signal arrives (= the pool's concurrency)
	celeryTaskTime = 15 * time.Second // each task's length: longer than any baseline deadline below
	// celeryApp is a real Celery app with Redis as broker and result backend. Each task records that it started
	// and that it finished in Redis sets, so the test counts lost tasks from Redis, as an operator would.
	celeryApp = `import os, time
import redis
from celery import Celery

url = os.environ["LASTCALL_REDIS"]
app = Celery("tasks", broker=url, backend=url)
app.conf.update(worker_prefetch_multiplier=1, worker_hijack_root_logger=False)
r = redis.Redis.from_url(url)

@app.task
def slow(n, secs):
    r.sadd("started", n)
    end = time.time() + secs
    while time.time() < end:
        time.sleep(0.05)
    r.sadd("done", n)
    return n
`
)

// celeryWorker is a real Celery worker (prefork pool, concurrency 2) with K tasks running.
type celeryWorker struct {
	ns    *nsProc
	redis *redis
	dir   string
	env   []string
}

// celeryArgv is the worker's command line; wrap it in `sh -c` for a shell entrypoint.
func celeryArgv() []string {
	return []string{"celery", "-A", "tasks", "worker", "--pool", "prefork", "--concurrency", fmt.Sprint(celeryTasks),
		"--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", "w@lastcall-test"}
}

// startCelery runs argv (a worker command, possibly wrapped) as PID 1 of a PID namespace and submits K tasks
// of celeryTaskTime; it returns once all K are running in the pool.
func startCelery(t *testing.T, argv ...string) *celeryWorker {
	t.Helper()
	requireReal(t, "celery", "unshare", "nsenter")
	requirePython(t, "celery", "redis")
	r := startRedis(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "tasks.py"), celeryApp)
	w := &celeryWorker{redis: r, dir: dir, env: debianEnv("LASTCALL_REDIS="+r.url(), "PYTHONPATH="+dir, asShimEnv+"=1")}
	w.ns = startInPIDNS(t, w.env, argv...)
	w.submit(t, celeryTasks)
	waitFor(t, 30*time.Second, fmt.Sprintf("%d Celery tasks to run", celeryTasks), func() bool {
		return r.count(t, "started") == celeryTasks
	})
	return w
}

// submit queues n tasks through Celery's own client, as an application would.
func (w *celeryWorker) submit(t *testing.T, n int) {
	t.Helper()
	cmd := exec.Command(debianPython, "-c", fmt.Sprintf("import tasks\nfor i in range(%d): tasks.slow.delay(i, %g)", n, celeryTaskTime.Seconds()))
	cmd.Dir, cmd.Env = w.dir, w.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("submit tasks: %v\n%s", err, out)
	}
}

// result counts, from Redis, the tasks that finished and those still queued.
func (w *celeryWorker) result(t *testing.T) (done, queued int) {
	t.Helper()
	out, err := w.redis.do("LLEN", "celery")
	if err != nil {
		t.Fatalf("redis LLEN celery: %v", err)
	}
	fmt.Sscan(out, &queued)
	return w.redis.count(t, "done"), queued
}

// The celery profile through the shim's hook: SIGTERM is Celery's warm shutdown. The running tasks finish, no
// new task is started (one queued after the signal stays in the queue), and the worker exits by itself.
func TestServerCeleryPrestopTermFinishesRunningTasks(t *testing.T) {
	t.Parallel()
	p := profile(t, "celery")
	w := startCelery(t, celeryArgv()...)
	hook := hookInNS(t, w.ns, prestopArgs(p.StopSignal, p.DrainTimeout)...)
	waitFor(t, 10*time.Second, "the hook to signal", func() bool { return !hook.stdout.signalled().IsZero() })
	sent := hook.stdout.signalled()
	time.Sleep(time.Second) // the worker has seen the signal; a new task must now wait for another worker
	w.submit(t, 1)
	if !w.ns.exitedWithin(celeryTaskTime + exitBound(p)) {
		t.Fatalf("celery still running %s after %s; output:\n%s", time.Since(sent).Round(time.Second), p.StopSignal, w.ns.out)
	}
	done, queued := w.result(t)
	t.Logf("celery %s: %d/%d running tasks done, %d queued after the signal left in the queue, exit %d after %s",
		p.StopSignal, done, celeryTasks, queued, w.ns.exitCode(), w.ns.exited.Sub(sent).Round(100*time.Millisecond))
	if done != celeryTasks {
		t.Errorf("%s: %d/%d running tasks finished, want all; output:\n%s", p.StopSignal, done, celeryTasks, w.ns.out)
	}
	if queued != 1 {
		t.Errorf("%s: %d tasks left in the queue, want the 1 submitted after the signal (the worker must stop consuming)", p.StopSignal, queued)
	}
	if got := w.ns.exited.Sub(sent); got < celeryTaskTime/2 {
		t.Errorf("celery exited %s after the signal, before its tasks could finish", got)
	}
	if st := hook.status(); st != "exit 0" && st != "signal SIGKILL" {
		t.Errorf("hook ended with %s; stdout:\n%s\nstderr:\n%s", st, hook.stdout, hook.stderr)
	}
}

// The baseline: SIGQUIT (or SIGINT twice) is Celery's cold shutdown, and a SIGKILL at a deadline is what a
// too-short grace period gives: the running tasks are lost (acknowledged on receipt, so not even requeued).
func TestServerCeleryBaselineColdShutdownLosesTasks(t *testing.T) {
	t.Parallel()
	for _, sig := range []string{"SIGQUIT", "SIGKILL"} {
		t.Run(sig, func(t *testing.T) {
			t.Parallel()
			w := startCelery(t, celeryArgv()...)
			s, err := ParseSignal(sig)
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.Kill(w.ns.pid, s); err != nil {
				t.Fatal(err)
			}
			if !w.ns.exitedWithin(10 * time.Second) {
				t.Fatalf("celery still running 10s after %s", sig)
			}
			done, queued := w.result(t)
			t.Logf("celery %s: %d/%d running tasks done, %d requeued", sig, done, celeryTasks, queued)
			if done != 0 || queued != 0 {
				t.Errorf("%s: %d done, %d requeued; want the %d running tasks lost (0 and 0), or the baseline proves nothing",
					sig, done, queued, celeryTasks)
			}
		})
	}
}

// Issue: `lastcall-shim run -- sh -c 'celery ... worker'`, a shell entrypoint that does not exec. The shim
// forwards SIGTERM to sh, sh dies, and the worker, reparented to the shim, must get SIGTERM and finish its
// tasks before the shim (PID 1) exits; exiting at once would make the kernel kill the worker.
func TestServerCeleryBehindShellUnderRunFinishesTasks(t *testing.T) {
	t.Parallel()
	entry := strings.Join(celeryArgv(), " ")
	w := startCelery(t, shimArgv(t, "run", "--", "sh", "-c", entry)...)
	sent := time.Now()
	if err := unix.Kill(w.ns.pid, unix.SIGTERM); err != nil { // the kubelet's SIGTERM to PID 1
		t.Fatal(err)
	}
	if !w.ns.exitedWithin(celeryTaskTime + 20*time.Second) {
		t.Fatalf("still running %s after SIGTERM; output:\n%s", time.Since(sent).Round(time.Second), w.ns.out)
	}
	done, queued := w.result(t)
	t.Logf("run -- sh -c celery: SIGTERM: %d/%d tasks done, %d requeued, exit %d after %s", done, celeryTasks, queued,
		w.ns.exitCode(), w.ns.exited.Sub(sent).Round(100*time.Millisecond))
	if done != celeryTasks {
		t.Errorf("%d/%d running tasks finished, want all; output:\n%s", done, celeryTasks, w.ns.out)
	}
	if code := w.ns.exitCode(); code != 128+int(unix.SIGTERM) {
		t.Errorf("exit %d, want sh's status 143 (killed by SIGTERM); output:\n%s", code, w.ns.out)
	}
}

// The baseline: the same entrypoint without lastcall. sh is PID 1, which the kernel protects from signals it
// does not handle, so the kubelet's SIGTERM does nothing; the SIGKILL at the end of the grace period (here 3 s,
// shorter than the tasks) kills the worker mid-task.
func TestServerCeleryBehindShellBaselineLosesTasks(t *testing.T) {
	t.Parallel()
	w := startCelery(t, "sh", "-c", strings.Join(celeryArgv(), " "))
	if err := unix.Kill(w.ns.pid, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if w.ns.exitedWithin(3 * time.Second) {
		t.Fatalf("sh as PID 1 exited on SIGTERM (%d): the baseline is not what Kubernetes sees", w.ns.exitCode())
	}
	unix.Kill(w.ns.pid, unix.SIGKILL)
	if !w.ns.exitedWithin(5 * time.Second) {
		t.Fatal("still running after SIGKILL")
	}
	done, queued := w.result(t)
	t.Logf("sh -c celery as PID 1: SIGTERM, SIGKILL 3s later: %d/%d tasks done, %d requeued", done, celeryTasks, queued)
	if done != 0 || queued != 0 {
		t.Errorf("%d done, %d requeued; want the %d running tasks lost, or the baseline proves nothing", done, queued, celeryTasks)
	}
}
