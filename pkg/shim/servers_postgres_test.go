package shim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pgBin finds Debian's PostgreSQL server binaries (/usr/lib/postgresql/N/bin), newest first.
func pgBin(t *testing.T) string {
	t.Helper()
	requireReal(t, "unshare", "nsenter", "setpriv")
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(dirs) == 0 {
		if os.Getenv("LASTCALL_REQUIRE_REAL") == "1" {
			t.Fatal("LASTCALL_REQUIRE_REAL=1 and no /usr/lib/postgresql/*/bin/postgres (hack/install-deps.sh installs postgresql)")
		}
		t.Skip("no /usr/lib/postgresql/*/bin/postgres")
	}
	return filepath.Dir(dirs[len(dirs)-1])
}

// pgServer is a private PostgreSQL cluster: initdb'd in a temp dir, run as the postgres user (it refuses root).
type pgServer struct {
	bin, data, sock string
	port            int
	ns              *nsProc
}

// asPostgres prefixes argv so it runs as the postgres user; setpriv execs, so the server stays PID 1.
func asPostgres(argv ...string) []string {
	return append([]string{"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"}, argv...)
}

func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	bin := pgBin(t)
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("no postgres user (the postgresql package creates it): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := t.TempDir()
	openDir(t, dir)
	pg := &pgServer{bin: bin, data: filepath.Join(dir, "data"), sock: dir, port: freePort(t)}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	argv := asPostgres(filepath.Join(bin, "initdb"), "-D", pg.data, "-U", "postgres", "--auth", "trust", "--no-sync")
	initdb := exec.Command(argv[0], argv[1:]...)
	initdb.Env = debianEnv()
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	pg.start(t)
	return pg
}

// start runs postgres as PID 1 of a new PID namespace and waits until it accepts queries.
func (pg *pgServer) start(t *testing.T) {
	t.Helper()
	pg.ns = startInPIDNS(t, debianEnv(asShimEnv+"=1"), asPostgres(filepath.Join(pg.bin, "postgres"), "-D", pg.data,
		"-p", strconv.Itoa(pg.port), "-k", pg.sock, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
		"-c", "shared_buffers=16MB", "-c", "log_min_messages=info")...)
	waitFor(t, 3*readyBound, "postgres to accept queries", func() bool {
		_, err := pg.query("SELECT 1")
		return err == nil
	})
}

// psql returns a psql command against the server over TCP.
func (pg *pgServer) psql(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(pg.bin, "psql"), append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(pg.port),
		"-U", "postgres", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"}, args...)...)
	cmd.Env = debianEnv()
	cmd.SysProcAttr = testProcAttr()
	return cmd
}

func (pg *pgServer) query(sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := pg.psql(ctx, "-c", sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// state is "Database cluster state" from pg_controldata: "shut down" after a clean stop; "in production" means
// the next start must run crash recovery.
func (pg *pgServer) state(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(pg.bin, "pg_controldata"), pg.data).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == "Database cluster state" {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("pg_controldata printed no cluster state:\n%s", out)
	return ""
}

// pgClients opens a long transaction (an insert, then a 60 s sleep) and an idle session, and waits until both
// are connected.
type pgClients struct {
	long, idle *exec.Cmd
	longOut    *syncBuffer
	longDone   chan error
}

func (pg *pgServer) clients(t *testing.T) *pgClients {
	t.Helper()
	if _, err := pg.query("CREATE TABLE work (id int)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	c := &pgClients{longOut: &syncBuffer{}, longDone: make(chan error, 1)}
	c.long = pg.psql(context.Background(), "-c", "BEGIN; INSERT INTO work VALUES (1); SELECT pg_sleep(60); COMMIT;")
	c.long.Stdout, c.long.Stderr = c.longOut, c.longOut
	c.idle = pg.psql(context.Background())
	idleIn, err := c.idle.StdinPipe() // never written: the session stays idle
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []*exec.Cmd{c.long, c.idle} {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	go func() { c.longDone <- c.long.Wait() }()
	t.Cleanup(func() {
		idleIn.Close()
		c.long.Process.Kill()
		c.idle.Process.Kill()
		c.idle.Wait()
	})
	waitFor(t, 10*time.Second, "the long transaction and the idle session", func() bool {
		out, err := pg.query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND (state = 'idle' OR query LIKE '%pg_sleep%')")
		return err == nil && out == "2"
	})
	return c
}

// The postgres profile: SIGINT is the fast shutdown. The long transaction is rolled back (its client is told
// why), the idle client is disconnected, postgres exits within the profile's timeout, and the data directory is
// cleanly shut down: the next start needs no crash recovery.
func TestServerPostgresPrestopIntFastShutdown(t *testing.T) {
	t.Parallel()
	p := profile(t, "postgres")
	pg := startPostgres(t)
	c := pg.clients(t)
	hook := hookInNS(t, pg.ns, prestopArgs(p.StopSignal, p.DrainTimeout)...)
	waitFor(t, 10*time.Second, "the hook to signal", func() bool { return !hook.stdout.signalled().IsZero() })
	sent := hook.stdout.signalled()
	if !pg.ns.exitedWithin(exitBound(p)) {
		t.Fatalf("postgres still running %s after %s", exitBound(p), p.StopSignal)
	}
	exit := pg.ns.exited.Sub(sent)
	var longErr error
	select {
	case longErr = <-c.longDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the long transaction's client still waits after postgres exited")
	}
	state := pg.state(t)
	t.Logf("postgres %s: exit %d after %s; long transaction: %v (%s); cluster state %q", p.StopSignal, pg.ns.exitCode(),
		exit.Round(10*time.Millisecond), longErr, strings.TrimSpace(c.longOut.String()), state)
	if longErr == nil || !strings.Contains(c.longOut.String(), "terminating connection due to administrator command") {
		t.Errorf("the long transaction's client got %v / %q; want it terminated by the administrator command", longErr, c.longOut)
	}
	if state != "shut down" {
		t.Errorf("cluster state %q after %s, want \"shut down\" (no crash recovery on the next start)", state, p.StopSignal)
	}
	pg.start(t)
	if n, err := pg.query("SELECT count(*) FROM work"); err != nil || n != "0" {
		t.Errorf("after restart: %q, %v; want 0 rows (the open transaction was rolled back)", n, err)
	}
}

// The baselines: SIGTERM is the smart shutdown, which waits for every client: with an idle session open it does
// not exit at all (the kubelet SIGKILLs it at the end of the grace period); SIGQUIT is the immediate shutdown,
// after which the next start must run crash recovery.
func TestServerPostgresBaselineTermWaitsQuitNeedsRecovery(t *testing.T) {
	t.Parallel()
	t.Run("SIGTERM waits for every client", func(t *testing.T) {
		t.Parallel()
		pg := startPostgres(t)
		pg.clients(t)
		hook := hookInNS(t, pg.ns, prestopArgs("SIGTERM", 5*time.Second)...)
		hook.wait(t, hookBound)
		t.Logf("postgres SIGTERM: hook %s; postgres still running: %v", hook.status(), !pg.ns.exitedWithin(0))
		if st := hook.status(); st != fmt.Sprintf("exit %d", ExitTimeout) {
			t.Errorf("hook %s, want exit %d: smart shutdown should outlast the timeout while a client is connected", st, ExitTimeout)
		}
	})
	t.Run("SIGQUIT needs crash recovery", func(t *testing.T) {
		t.Parallel()
		pg := startPostgres(t)
		pg.clients(t)
		hook := hookInNS(t, pg.ns, prestopArgs("SIGQUIT", 10*time.Second)...)
		if !pg.ns.exitedWithin(hookBound) {
			t.Fatalf("postgres still running after SIGQUIT; hook:\n%s", hook.stdout)
		}
		if state := pg.state(t); state != "in production" {
			t.Errorf("cluster state %q after SIGQUIT, want \"in production\" (crash recovery on the next start)", state)
		} else {
			t.Logf("postgres SIGQUIT: cluster state %q: the next start runs crash recovery", state)
		}
	})
}
