package profiles

import (
	"fmt"
	"strconv"
	"strings"
)

// Signal is a POSIX signal in its canonical "SIGXXX" spelling. It stays a string (not syscall.Signal) because
// the engine renders it into Pod specs and shim arguments, and Kubernetes' lifecycle.stopSignal uses these names.
type Signal string

// The signals a profile may use. Kubernetes' lifecycle.stopSignal accepts more; these are the ones servers use
// for a graceful stop, and keeping the set small lets the CRD schema enumerate them.
const (
	SIGTERM  Signal = "SIGTERM"
	SIGQUIT  Signal = "SIGQUIT"
	SIGINT   Signal = "SIGINT"
	SIGHUP   Signal = "SIGHUP"
	SIGUSR1  Signal = "SIGUSR1"
	SIGUSR2  Signal = "SIGUSR2"
	SIGWINCH Signal = "SIGWINCH"
)

var signalNumbers = map[Signal]int{
	SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGUSR1: 10, SIGUSR2: 12, SIGTERM: 15, SIGWINCH: 28,
}

// ParseSignal accepts "SIGQUIT", "QUIT", "quit" and Linux signal numbers ("3") and returns the canonical form.
func ParseSignal(s string) (Signal, error) {
	v := strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(v); err == nil {
		for sig, num := range signalNumbers {
			if num == n {
				return sig, nil
			}
		}
		return "", fmt.Errorf("signal number %d is not one of %s", n, signalList())
	}
	if !strings.HasPrefix(v, "SIG") {
		v = "SIG" + v
	}
	if _, ok := signalNumbers[Signal(v)]; !ok {
		return "", fmt.Errorf("unknown signal %q: want one of %s", s, signalList())
	}
	return Signal(v), nil
}

// Short returns the name without the SIG prefix ("QUIT"), the form the shim's --rewrite flag uses.
func (s Signal) Short() string { return strings.TrimPrefix(string(s), "SIG") }

func signalList() string {
	return "SIGTERM, SIGQUIT, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH"
}
