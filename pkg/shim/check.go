package shim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// PHPFPMCheck verifies php-fpm's process_control_timeout, the time php-fpm's master gives workers to finish after
// SIGQUIT. At 0 (php-fpm's default) the master sends SIGTERM to its workers about 2.5 ms after SIGQUIT, so
// in-flight requests die even on the graceful signal; above the drain budget the kubelet kills php-fpm first.
type PHPFPMCheck struct {
	Budget time.Duration // the profile's drain timeout
	Binary string        // php-fpm executable; found on PATH and in sbin directories when empty
	Config string        // passed as -y when set
}

// PHPFPMResult is what the check found.
type PHPFPMResult struct {
	Binary     string
	ConfigFile string        // the main config php-fpm reported, or Config
	Timeout    time.Duration // effective process_control_timeout
	Suggested  time.Duration // what to set when Problem is set
	Problem    string        // empty when the setting fits the budget
}

// candidate names and directories: Debian installs php-fpm8.2 in /usr/sbin, the official images php-fpm in
// /usr/local/sbin, and neither is always on a container's PATH.
var (
	phpFPMNames = []string{"php-fpm", "php-fpm8.5", "php-fpm8.4", "php-fpm8.3", "php-fpm8.2", "php-fpm8.1", "php-fpm8.0", "php-fpm7.4"}
	phpFPMDirs  = []string{"/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin"}
	pctLine     = regexp.MustCompile(`process_control_timeout\s*=\s*(\d+)\s*([smhd]?)`)
	confLine    = regexp.MustCompile(`configuration file (\S+) test is successful`)
	includeLine = regexp.MustCompile(`(?m)^\s*include\s*=\s*(\S+)`)
)

func findPHPFPM() (string, error) {
	for _, n := range phpFPMNames {
		if p, err := lookPHPFPM(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no php-fpm binary found (looked for php-fpm and php-fpm8.x on PATH and in %s); pass --binary",
		strings.Join(phpFPMDirs, ", "))
}

// lookPHPFPM resolves name like a shell would, and also in the sbin directories that a non-root PATH lacks.
func lookPHPFPM(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil || strings.Contains(name, "/") {
		return p, err
	}
	for _, d := range phpFPMDirs {
		p := filepath.Join(d, name)
		if st, serr := os.Stat(p); serr == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", err
}

// Run executes `php-fpm -tt`, which prints the effective configuration to stderr, and evaluates the timeout.
// An error means the value could not be read at all.
func (c PHPFPMCheck) Run(ctx context.Context) (PHPFPMResult, error) {
	var r PHPFPMResult
	bin := c.Binary
	var err error
	if bin == "" {
		if bin, err = findPHPFPM(); err != nil {
			return r, err
		}
	} else if bin, err = lookPHPFPM(bin); err != nil {
		return r, fmt.Errorf("php-fpm binary %q: %w", c.Binary, err)
	}
	r.Binary = bin
	var args []string
	if os.Geteuid() == 0 {
		// As root, php-fpm refuses pools without a user unless -R; the check reads one global setting and
		// must not fail on the pool's user.
		args = append(args, "-R")
	}
	if c.Config != "" {
		f, err := os.Open(c.Config)
		if err != nil {
			return r, fmt.Errorf("cannot read php-fpm config: %w", err)
		}
		f.Close()
		args = append(args, "-y", c.Config)
		r.ConfigFile = c.Config
	}
	args = append(args, "-tt")
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, runErr := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if m := confLine.FindSubmatch(out); m != nil {
		r.ConfigFile = string(m[1])
	}
	m := pctLine.FindSubmatch(out)
	if runErr != nil || m == nil {
		why := lastError(out)
		if runErr != nil {
			why = fmt.Sprintf("%v: %s", runErr, why)
		}
		return r, fmt.Errorf("%s %s failed, cannot read process_control_timeout: %s", bin, strings.Join(args, " "), why)
	}
	n, _ := strconv.Atoi(string(m[1]))
	unit := map[string]time.Duration{"": time.Second, "s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[string(m[2])]
	r.Timeout = time.Duration(n) * unit
	c.evaluate(&r)
	return r, nil
}

// evaluate fills Problem and Suggested. The suggestion leaves a sixth of the budget (at least 1s) for the master
// to reap its workers and exit before the hook's timeout.
func (c PHPFPMCheck) evaluate(r *PHPFPMResult) {
	sugg := (c.Budget * 5 / 6).Truncate(time.Second)
	if sugg < time.Second {
		sugg = time.Second
	}
	r.Suggested = sugg
	where := c.where(r.ConfigFile)
	switch {
	case r.Timeout == 0:
		r.Problem = fmt.Sprintf("php-fpm process_control_timeout is 0 (the default), so on SIGQUIT php-fpm kills in-flight requests at once; set process_control_timeout = %s %s",
			fmtSeconds(sugg), where)
	case r.Timeout > c.Budget:
		r.Problem = fmt.Sprintf("php-fpm process_control_timeout is %s, longer than the %s drain budget, so the kubelet kills php-fpm before slow requests finish; set process_control_timeout = %s %s, or raise the budget (lastcall.dev/drain-timeout)",
			fmtSeconds(r.Timeout), c.Budget, fmtSeconds(sugg), where)
	}
}

// where names the file to edit: the main config's [global] section, or a drop-in in its include directory
// (official images already use php-fpm.d/zz-docker.conf for [global] settings).
func (c PHPFPMCheck) where(conf string) string {
	if conf == "" {
		return "in the [global] section of php-fpm.conf"
	}
	dropIn := filepath.Join(filepath.Dir(conf), "php-fpm.d")
	if b, err := os.ReadFile(conf); err == nil {
		if m := includeLine.FindSubmatch(b); m != nil {
			inc := string(m[1])
			if !filepath.IsAbs(inc) {
				inc = filepath.Join(filepath.Dir(conf), inc)
			}
			dropIn = filepath.Dir(inc)
		}
	}
	return fmt.Sprintf("in the [global] section of %s (or in %s starting with a [global] line)", conf, filepath.Join(dropIn, "zz-lastcall.conf"))
}

func fmtSeconds(d time.Duration) string { return strconv.Itoa(int(d/time.Second)) + "s" }

// lastError returns php-fpm's last ERROR/ALERT line, which says why -tt failed.
func lastError(out []byte) string {
	last := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "ERROR:") || strings.Contains(l, "ALERT:") {
			last = strings.TrimSpace(l)
		}
	}
	if last == "" {
		return "no process_control_timeout in its output"
	}
	return last
}

const checkSynopsis = `check php-fpm [--budget T] [--binary P] [--config F] [--mode warn|enforce]

Runs "P -tt" (with -y F), reads the effective process_control_timeout and, when it is 0 or larger than the
budget T, prints what to set and where. warn: print a warning and exit 0. enforce: exit 5. A missing binary
or unreadable config is reported the same way.`

func checkMain(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-help" || args[0] == "-h") {
			fmt.Fprintf(stdout, "Usage: lastcall-shim %s\n%s", checkSynopsis, exitCodeLine)
			return nil
		}
		return usageErr("check: want a server name: check php-fpm [flags]")
	}
	if args[0] != "php-fpm" {
		return usageErr("check: unknown check %q (known: php-fpm)", args[0])
	}
	fs := newFlagSet("check php-fpm", checkSynopsis, stdout)
	budget := fs.Duration("budget", 30*time.Second, "the drain timeout php-fpm must finish within")
	binary := fs.String("binary", "", "php-fpm executable (default: php-fpm or php-fpm8.x on PATH or in sbin directories)")
	config := fs.String("config", "", "php-fpm main config file, passed as -y (default: the binary's own)")
	mode := fs.String("mode", "warn", "warn: report and exit 0; enforce: exit 5 on a problem")
	if err := fs.parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("check php-fpm: unexpected argument %q", fs.Arg(0))
	}
	if *mode != "warn" && *mode != "enforce" {
		return usageErr("check php-fpm: --mode must be warn or enforce, got %q", *mode)
	}
	if *budget <= 0 {
		return usageErr("check php-fpm: --budget must be positive")
	}
	r, err := PHPFPMCheck{Budget: *budget, Binary: *binary, Config: *config}.Run(context.Background())
	problem := r.Problem
	if err != nil {
		problem = err.Error()
	}
	switch {
	case problem == "":
		fmt.Fprintf(stdout, "lastcall-shim check php-fpm: ok: process_control_timeout = %s fits the %s budget (%s)\n",
			fmtSeconds(r.Timeout), *budget, r.ConfigFile)
		return nil
	case *mode == "warn":
		fmt.Fprintln(stderr, prefix+"warning: check php-fpm: "+oneLine(problem))
		return nil
	default:
		if err == nil {
			err = errors.New(problem)
		}
		return withCode(ExitCheckFailed, fmt.Errorf("check php-fpm: %w", err))
	}
}
