package shim

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/lastcall-dev/lastcall/pkg/version"
)

// Exit codes, documented in the package doc and in every --help.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitNoTarget    = 3
	ExitTimeout     = 4
	ExitCheckFailed = 5
	ExitCannotExec  = 126
	ExitNotFound    = 127
)

// prefix starts every line lastcall-shim writes about a failure, so it can be found in kubelet events.
const prefix = "lastcall-shim: "

// exitError carries the exit code a failure maps to; Main prints its message as one line.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// errSilent is a failure that has already been explained (run: the child's own exit status).
var errSilent = errors.New("silent")

func withCode(code int, err error) error { return &exitError{code: code, err: err} }

func usageErr(format string, args ...any) error {
	return withCode(ExitUsage, fmt.Errorf(format, args...))
}

// exitCodeLine is appended to every --help so the codes are discoverable without the docs.
const exitCodeLine = `
Exit codes: 0 ok, 1 failure, 2 usage, 3 no target (prestop), 4 timeout (prestop),
5 check failed (check --mode enforce), 126/127 cannot run/not found (run); run exits with its child's
status (128+n when killed by signal n).
`

const mainUsage = `lastcall-shim: graceful shutdown helper injected by lastcall

Usage:
  lastcall-shim install DIR
  lastcall-shim prestop [--delay D] [--signal S] [--timeout T] [--target auto|pid:N|name:NAME]
  lastcall-shim run [--rewrite FROM=TO]... [--delay D] [--timeout T] -- CMD [ARGS...]
  lastcall-shim check php-fpm [--budget T] [--binary P] [--config F] [--mode warn|enforce]
  lastcall-shim version

Run "lastcall-shim COMMAND --help" for details.
` + exitCodeLine

// Main runs lastcall-shim with args (without the program name) and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return report(usageErr("missing command (see lastcall-shim --help)"), stderr)
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "install":
		err = installMain(rest, stdout, stderr)
	case "prestop":
		err = prestopMain(rest, stdout, stderr)
	case "run":
		err = runMain(rest, stdout, stderr)
	case "check":
		err = checkMain(rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "lastcall-shim "+version.Version)
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, mainUsage)
	default:
		err = usageErr("unknown command %q (see lastcall-shim --help)", cmd)
	}
	return report(err, stderr)
}

// report prints err as the single failure line and maps it to an exit code.
func report(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if !errors.Is(err, errSilent) {
		fmt.Fprintln(stderr, prefix+oneLine(err.Error()))
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitFailure
}

// oneLine keeps a message on one line: kubelet events and log scrapers split on newlines.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// flagSet wraps flag.FlagSet: silent on errors, so a failure is the one line report prints, and --help prints
// the usage with the exit codes to the help writer (stdout).
type flagSet struct {
	*flag.FlagSet
	synopsis string
	help     io.Writer
}

func newFlagSet(name, synopsis string, help io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // flag calls it on errors too; parse prints the usage only for --help
	return &flagSet{FlagSet: fs, synopsis: synopsis, help: help}
}

// parse parses args and turns flag errors into usage errors; --help yields flag.ErrHelp (exit 0).
func (fs *flagSet) parse(args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(fs.help, "Usage: lastcall-shim %s\n\nFlags:\n", fs.synopsis)
		fs.SetOutput(fs.help)
		fs.PrintDefaults()
		fmt.Fprint(fs.help, exitCodeLine)
		return err
	default:
		return usageErr("%s: %w (see --help)", fs.Name(), err)
	}
}
