package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Output is the result of injecting a whole input: the manifests to write and what happened to each pod.
type Output struct {
	Manifests []byte
	Pods      []podReport
}

// Inject runs the injector over a manifest stream. Untouched documents are copied byte for byte; a changed
// document is re-encoded (YAML or JSON, as it came). Every input error is returned (joined), not just the
// first, so one CI run shows all of them.
func (in *Injector) Inject(data []byte) (*Output, error) {
	docs, tail := splitInput(data)
	results := in.processAll(docs)
	var errs []error
	out := &Output{}
	size := len(data)
	for i := range results {
		size += len(results[i].out)
	}
	buf := make([]byte, 0, size)
	for i, r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		out.Pods = append(out.Pods, r.pods...)
		buf = append(buf, docs[i].sep...)
		if r.out != nil {
			buf = append(buf, r.out...)
		} else {
			buf = append(buf, docs[i].text...)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out.Manifests = append(buf, tail...)
	return out, nil
}

// findings writes one line per warning, problem, denial, namespace skip and document left alone to w, each
// prefixed with the document, and reports whether any of them counts for --strict (a skip does not: it is the
// user's selection or a kind lastcall does not read, not a defect of the manifest).
func findings(w io.Writer, pods []podReport) (strictFindings, denied bool) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	for _, p := range pods {
		if p.NamespaceSkip != "" {
			fmt.Fprintf(bw, "lastcall: note: %s: not injected: %s\n", p.Ref, p.NamespaceSkip)
			continue
		}
		if p.KindSkip != "" {
			fmt.Fprintf(bw, "lastcall: note: %s: not injected: %s\n", p.Ref, p.KindSkip)
			continue
		}
		if p.Denied != "" {
			denied = true
			fmt.Fprintf(bw, "lastcall: denied: %s: the webhook would refuse this pod: %s\n", p.Ref, p.Denied)
		}
		if p.Result == nil {
			continue
		}
		for _, msg := range p.Result.AllWarnings() {
			strictFindings = true
			fmt.Fprintf(bw, "lastcall: warning: %s: %s\n", p.Ref, strings.TrimPrefix(msg, "lastcall: "))
		}
	}
	return strictFindings, denied
}

func runInject(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var f inputFlags
	fs := newFlagSet("inject", stderr)
	f.register(fs)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return ExitBadInput
	}
	if len(rest) > 0 {
		return badInput(stderr, fmt.Errorf("inject: unexpected argument %q (use -f FILE)", rest[0]))
	}
	_, out, err := f.inject(stdin)
	if err != nil {
		// Nothing goes to stdout: half a manifest piped into kubectl apply is worse than none.
		return badInput(stderr, err)
	}
	if _, err := stdout.Write(out.Manifests); err != nil {
		fmt.Fprintf(stderr, "lastcall: error: write: %v\n", err)
		return ExitBadInput
	}
	return exitFor(stderr, out.Pods, f.strict)
}

// exitFor prints the findings and picks the exit code.
func exitFor(stderr io.Writer, pods []podReport, strict bool) int {
	found, denied := findings(stderr, pods)
	if denied || (strict && found) {
		return ExitFindings
	}
	return ExitOK
}
