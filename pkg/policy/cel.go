package policy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// The CEL below is the engine's decision procedure (pkg/mutate) written as policy variables. CEL in the API
// server has no local bindings, so every per-container value is a list indexed like variables.cands (native
// sidecars first, then the app containers, as the engine plans them) and each stage is its own variable:
// the server evaluates a variable at most once per admission. Comments name the engine function each stage
// mirrors; the parity test holds both to the same golden pods.

// unset marks an annotation that is absent (annotation values are never NUL-prefixed text in practice).
const unset = `'\u0001'`

// Regular expressions for Go's time.ParseDuration syntax and for values whose size the CEL duration() can
// parse without overflow.
const (
	durSyntax = `^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`
	sigNumber = `^[-+]?[0-9]{1,18}$`
)

type variable struct{ name, expr string }

type compiler struct {
	o        Options
	catalog  *profiles.Catalog
	vars     []variable
	warnVars []variable // only the warning policy's
	limit    int64
	defProf  string
	defWarn  string
	names    string
	problems []string // profiles that could not be compiled
}

func (c *compiler) add(name, expr string) { c.vars = append(c.vars, variable{name, expr}) }

func (c *compiler) addWarn(name, expr string) { c.warnVars = append(c.warnVars, variable{name, expr}) }

// forJ maps each candidate index j.
func forJ(expr string) string { return "lists.range(size(variables.cands)).map(j, " + expr + ")" }

func base(e string) string { return "(" + e + ").substring((" + e + ").lastIndexOf('/') + 1)" }

// ceilSeconds mirrors mutate.ceilSeconds for a non-negative CEL duration. getMilliseconds is the whole
// duration in milliseconds, and every duration here has millisecond precision (finer ones are refused, see
// unsupported), so rounding the milliseconds up is exact.
func ceilSeconds(d string) string {
	return "(((" + d + ").getMilliseconds() + 999) / 1000)"
}

// frac is the sub-second part of a non-negative duration.
func frac(d string) string {
	return "((" + d + ") - duration(string((" + d + ").getSeconds()) + 's'))"
}

// formatDuration is Go's time.Duration.String for non-negative durations with millisecond precision (finer
// values are refused earlier, see unsupported).
func formatDuration(d string) string {
	ms := frac(d) + ".getMilliseconds()"
	trimmed := "(" + ms + " % 100 == 0 ? string(" + ms + " / 100) : " + ms + " % 10 == 0 ? string(1000 + " + ms + ").substring(1, 3) : string(1000 + " + ms + ").substring(1))"
	secs := "(" + d + ").getSeconds()"
	return "((" + d + ") == duration('0s') ? '0s' : (" + d + ") < duration('1s') ? string(" + ms + ") + 'ms' : " +
		"(" + secs + " >= 3600 ? string(" + secs + " / 3600) + 'h' : '') + (" + secs + " >= 60 ? string(" + secs + " % 3600 / 60) + 'm' : '') + " +
		"string(" + secs + " % 60) + (" + ms + " == 0 ? '' : '.' + " + trimmed + ") + 's')"
}

// problem builds a sortable problem: key NUL fallback NUL message, the message as mutate.Problem.String says
// it. Sorting the strings sorts by key, then fallback, like mutate's finish().
func problem(key, value, reason, fallback string) string {
	return "(" + key + ") + '\\u0000' + (" + fallback + ") + '\\u0000' + 'annotation ' + (" + key + ") + '=' + " + quoteExpr(value) + " + ': ' + (" + reason + ") + '; ' + (" + fallback + ")"
}

// uncompiledReason is the fallback reason for Options.Uncompiled.
const uncompiledReason = "a ShutdownProfile policy mode could not compile: its PolicyCompiled condition, or lastcall policy render, says why"

func (c *compiler) build() {
	P := mutate.Prefix
	c.add("anns", "object.metadata.?annotations.orValue({})")
	c.add("labels", "object.metadata.?labels.orValue({})")
	c.add("nsLabels", "namespaceObject.metadata.?labels.orValue({})")
	c.add("nsAnns", "namespaceObject.metadata.?annotations.orValue({})")
	// Engine.podSkip.
	c.add("skip", "'kubernetes.io/config.mirror' in variables.anns ? 'mirror-pod' : "+
		"object.spec.?os.?name.orValue('') == 'windows' ? 'windows' : "+
		"variables.labels[?"+lit(mutate.LabelInject)+"].orValue('') == 'disabled' ? 'pod-opt-out-label' : "+
		"variables.anns[?"+lit(mutate.AnnotationInject)+"].orValue('').trim().lowerAscii() in "+litList(mutate.InjectOptOutValues())+" ? 'pod-opt-out-annotation' : "+
		"variables.nsLabels[?"+lit(mutate.LabelInject)+"].orValue('') == 'disabled' ? 'namespace-opt-out' : ''")
	// Observe mode (namespace label lastcall.dev/inject=observe): the pod is only labelled for the observer.
	c.add("observe", "variables.nsLabels[?"+lit(mutate.LabelInject)+"].orValue('') == "+lit(mutate.ManagedObserve))
	c.add("inits", "object.spec.?initContainers.orValue([])")
	c.add("names", "object.spec.containers.map(x, x.name) + variables.inits.map(x, x.name)")
	c.add("record", "variables.anns[?"+lit(mutate.AnnotationInjected)+"].orValue('').split(',').filter(e, e.contains('=') && e.substring(e.indexOf('=') + 1) != '-' && !e.endsWith('(kept)')).map(e, e.substring(0, e.indexOf('=')))")
	shimCmd := "[" + lit(mutate.ShimImagePath) + ", 'install', " + lit(mutate.ShimDir) + "]"
	isCheck := func(x string) string {
		return "(size(" + x + ".?command.orValue([])) > 2 && " + x + ".command[0] == " + lit(mutate.ShimPath) + " && " + x + ".command[1] == 'check')"
	}
	isOurs := func(x string) string {
		return "(" + x + ".?command.orValue([]) == " + shimCmd + " || " + isCheck(x) + ")"
	}
	// Candidates: native sidecars that lastcall did not add, then the app containers (Engine.Mutate).
	c.add("cands", "lists.range(size(variables.inits)).filter(i, variables.inits[i].?restartPolicy.orValue('') == 'Always' && !"+isOurs("variables.inits[i]")+
		").map(i, {'name': dyn(variables.inits[i].name), 'init': dyn(true), 'idx': dyn(i), 'c': dyn(variables.inits[i])}) + "+
		"lists.range(size(object.spec.containers)).map(i, {'name': dyn(object.spec.containers[i].name), 'init': dyn(false), 'idx': dyn(i), 'c': dyn(object.spec.containers[i])})")

	// Annotation problems (parseAnnotations): unknown keys and container suffixes that name no container.
	c.add("lcKeys", "variables.anns.filter(k, k.startsWith("+lit(P)+")).map(k, [string(k), string(k).substring("+strconv.Itoa(len(P))+")])")
	c.add("annProblems", "variables.lcKeys.map(p, p[1].endsWith('.') && p[1].indexOf('.') == size(p[1]) - 1 ? "+
		problem("p[0]", "variables.anns[p[0]]", "'the key names no container after the dot'", "'ignored'")+" : "+
		"p[1].indexOf('.') >= 0 && !(p[1].substring(p[1].indexOf('.') + 1) in variables.names) ? "+
		problem("p[0]", "variables.anns[p[0]]", "'the pod has no container named ' + "+quoteExpr("p[1].substring(p[1].indexOf('.') + 1)"), "'ignored'")+" : "+
		"p[0] == "+lit(mutate.AnnotationInject)+" ? (variables.anns[p[0]].trim().lowerAscii() in "+litList(append(mutate.InjectOptOutValues(), mutate.InjectOptInValues()...))+" ? '' : "+
		problem("p[0]", "variables.anns[p[0]]", "'not a selection value (false, no, off, disabled or 0 opt the pod out; true, yes, on, enabled or 1 do nothing)'", "'the pod is not opted out'")+") : "+
		"(p[1].indexOf('.') >= 0 ? p[1].substring(0, p[1].indexOf('.')) : p[1]) in ['profile', 'drain-delay', 'stop-signal', 'drain-timeout', 'supervise'] || "+
		"(p[1].indexOf('.') < 0 && p[0] in ["+lit(mutate.AnnotationInject)+", "+lit(mutate.AnnotationInjected)+", "+lit(mutate.AnnotationVersion)+"]) ? '' : "+
		problem("p[0]", "variables.anns[p[0]]", "'unknown lastcall annotation (known: inject, profile, drain-delay, stop-signal, drain-timeout, supervise)'", "'ignored'")+
		").filter(s, s != '')")

	c.add("catalog", c.catalogLiteral())
	// Engine.namespaceDefault.
	c.add("nsDef", "variables.nsAnns[?"+lit(mutate.AnnotationDefaultProfile)+"].orValue('')")
	c.add("nsProf", "variables.nsDef in variables.catalog ? variables.nsDef : ''")
	c.add("nsProblems", "variables.nsDef == '' || variables.nsDef == 'auto' || variables.nsDef in variables.catalog ? [] : ["+
		"'"+mutate.AnnotationDefaultProfile+"\\u0000using the cluster default "+c.o.Policy.DefaultProfile+"\\u0000namespace annotation "+mutate.AnnotationDefaultProfile+"=' + "+
		quoteExpr("variables.nsDef")+" + ': unknown profile (known: "+c.names+"); using the cluster default "+c.o.Policy.DefaultProfile+"']")

	// Program and imageName (pkg/profiles) for detection.
	c.add("cmds", "variables.cands.map(x, x.c.?command.orValue([]))")
	c.add("args", "variables.cands.map(x, x.c.?args.orValue([]))")
	c.add("words", forJ("size(variables.cmds[j]) > 0 ? variables.cmds[j] : variables.args[j]"))
	c.add("progs", forJ(program("variables.words[j]")))
	c.add("img", "variables.cands.map(x, x.c.?image.orValue(''))")
	c.add("imgBase", "variables.img.map(s, s.indexOf('@') >= 0 ? s.substring(0, s.indexOf('@')) : s).map(s, s.substring(s.lastIndexOf('/') + 1))")
	c.add("imgName", "variables.imgBase.map(s, s.indexOf(':') >= 0 ? s.substring(0, s.indexOf(':')) : s)")
	c.add("imgTag", "variables.imgBase.map(s, s.indexOf(':') >= 0 ? s : s + ':latest')")
	// Every pattern is one element of a list (a chain of conditionals would pass CEL's nesting limit with
	// a hundred profiles); the first match wins.
	c.add("detAll", forJ(c.detectList("variables.imgName[j]", "variables.imgTag[j]", "variables.progs[j]")))
	// The winner's profile (what the mutation needs) and its rule text (what warnings and explain show).
	c.add("detName", "variables.detAll.map(h, size(h) == 0 ? '' : h[0].split('\\u0000')[1])")
	c.add("detText", forJ("size(variables.detAll[j]) == 0 ? '' : variables.detAll[j][0].split('\\u0000')[2] + ' ' + "+
		"(variables.detAll[j][0].split('\\u0000')[2] == 'image' ? "+quoteExpr("variables.img[j]")+" : "+quoteExpr("variables.progs[j]")+") + ' matches ' + variables.detAll[j][0].split('\\u0000')[3]"))

	// selectContainer: the profile.
	c.add("psp", "variables.cands.map(x, variables.anns[?"+lit(P+"profile.")+" + x.name].orValue("+unset+"))")
	c.add("ppw", "variables.anns[?"+lit(mutate.AnnotationProfile)+"].orValue("+unset+")")
	c.add("ppwDec", "variables.ppw != "+unset+" && (variables.ppw.trim() in ['none', 'auto'] || variables.ppw.trim() in variables.catalog)")
	c.add("pdec", "variables.psp.map(s, s != "+unset+" && (s.trim() in ['none', 'auto'] || s.trim() in variables.catalog))")
	c.add("pchoice", forJ("variables.pdec[j] ? variables.psp[j].trim() : variables.ppwDec ? variables.ppw.trim() : 'auto'"))
	c.add("pkey", forJ("variables.pdec[j] ? "+lit(P+"profile.")+" + variables.cands[j].name : "+lit(mutate.AnnotationProfile)))
	c.add("pbad", forJ("(variables.psp[j] != "+unset+" && !variables.pdec[j] ? ["+lit(P+"profile.")+" + variables.cands[j].name] : []) + "+
		"(!variables.pdec[j] && variables.ppw != "+unset+" && !variables.ppwDec ? ["+lit(mutate.AnnotationProfile)+"] : [])"))
	c.add("skipSel", forJ("(variables.psp[j] == "+unset+" || variables.psp[j] == 'auto') && variables.cands[j].init ? 'native-sidecar' : "+
		"(variables.psp[j] == "+unset+" || variables.psp[j] == 'auto') && variables.cands[j].name in "+c.meshList()+" ? 'mesh-proxy' : "+
		"variables.pchoice[j] == 'none' ? 'profile-none' : ''"))
	c.add("sel", "variables.skipSel.map(s, s == '')")
	c.add("prof", forJ("!(variables.pchoice[j] in ['auto', 'none']) ? variables.pchoice[j] : variables.detName[j] != '' ? variables.detName[j] : variables.nsProf != '' ? variables.nsProf : "+lit(c.defProf)))
	c.add("psrc", forJ("!(variables.pchoice[j] in ['auto', 'none']) ? 'annotation ' + variables.pkey[j] : variables.detName[j] != '' ? 'detected: ' + variables.detText[j] : "+
		"variables.nsProf != '' ? 'namespace annotation "+mutate.AnnotationDefaultProfile+"' : 'cluster default'"))
	c.add("cp", "variables.prof.map(p, variables.catalog[p])")
	c.add("profProblems", forJ("variables.sel[j] ? variables.pbad[j].map(k, "+
		problem("k", "variables.anns[k]", "'unknown profile (known: "+c.names+", auto, none)'", "'container ' + variables.cands[j].name + ' uses ' + variables.prof[j] + ' (' + variables.psrc[j] + ')'")+
		") : []"))

	// resolve: the overrides.
	c.override("d", "drain-delay", "drain delay", durationParse("0s", "10m", "out of range (0s to 10m0s)", "not a duration (use Go syntax such as 5s or 1m30s)"), "variables.cp[j].delay", true)
	c.override("t", "drain-timeout", "drain timeout", durationParse("1s", "1h", "out of range (1s to 1h0m0s)", "not a duration (use Go syntax such as 30s or 2m)"), "variables.cp[j].timeout", true)
	c.override("s", "stop-signal", "signal", signalParse, "variables.cp[j].signal", false)
	c.override("v", "supervise", "supervision setting", boolParse, "variables.cp[j].supervise", false)

	// Values Go parses but this policy cannot reproduce exactly: the webhook handles such pods.
	durKeys := "variables.dsp + [variables.dpw] + variables.tsp + [variables.tpw]"
	c.add("unsupported", "("+durKeys+").exists(s, s != "+unset+" && s.trim().matches("+lit(durSyntax)+") && (size(s.trim()) > 20 || s.trim().matches('[0-9]{7}') || "+
		frac("duration(s.trim())")+" != duration(string("+frac("duration(s.trim())")+".getMilliseconds()) + 'ms'))) ? "+
		"'a duration annotation with more than millisecond precision or more than 20 characters' : ''")

	c.add("podProblems", "variables.annProblems + variables.profProblems.flatten() + variables.dProblems.flatten() + variables.tProblems.flatten() + variables.sProblems.flatten() + variables.vProblems.flatten()")
	msg := "map(p, p.substring(p.lastIndexOf('\\u0000') + 1))"
	c.add("problems", "(variables.podProblems + variables.nsProblems).sort()")
	c.add("problemList", "lists.range(size(variables.problems)).filter(i, i == 0 || variables.problems[i] != variables.problems[i - 1]).map(i, variables.problems[i])."+msg)
	c.add("denySorted", "variables.podProblems.sort()")
	c.add("denyList", "variables.observe ? [] : lists.range(size(variables.denySorted)).filter(i, i == 0 || variables.denySorted[i] != variables.denySorted[i - 1]).map(i, variables.denySorted[i])."+msg)

	// markKept: a user's hook is kept (policy keep); a kept native sleep is that container's delay.
	pre := "x.c.?lifecycle.?preStop"
	c.add("hookKind", "variables.cands.map(x, !"+pre+".hasValue() ? 'none' : "+
		"size("+pre+".?exec.?command.orValue([])) > 1 && x.c.lifecycle.preStop.exec.command[0] == "+lit(mutate.ShimPath)+" && x.c.lifecycle.preStop.exec.command[1] == 'prestop' ? 'ours' : "+
		pre+".?sleep.hasValue() && !"+pre+".?exec.hasValue() && !"+pre+".?httpGet.hasValue() && !"+pre+".?tcpSocket.hasValue() ? (x.name in variables.record ? 'ours' : 'usersleep') : 'user')")
	keep := c.o.Policy.ExistingPreStop == mutate.ExistingPreStopKeep
	c.add("kept0", forJ("variables.sel[j] && variables.hookKind[j] in ['user', 'usersleep'] && "+strconv.FormatBool(keep)))
	c.add("delay0", forJ("variables.kept0[j] && variables.hookKind[j] == 'usersleep' && variables.cands[j].c.lifecycle.preStop.sleep.seconds >= 0 ? "+
		"duration(string(variables.cands[j].c.lifecycle.preStop.sleep.seconds > 600 ? 600 : variables.cands[j].c.lifecycle.preStop.sleep.seconds) + 's') : variables.dVal[j]"))
	// order: an upstream's delay is at least the latest proxy delay + 1s.
	c.add("proxyDelays", "lists.range(size(variables.cands)).filter(j, variables.sel[j] && !variables.cands[j].init && variables.cp[j].role == 'proxy').map(j, variables.delay0[j]).sort()")
	c.add("delay1", forJ("variables.sel[j] && !variables.cands[j].init && !variables.kept0[j] && variables.cp[j].role == 'upstream' && size(variables.proxyDelays) > 0 && "+
		"variables.delay0[j] < variables.proxyDelays[size(variables.proxyDelays) - 1] + duration('1s') ? variables.proxyDelays[size(variables.proxyDelays) - 1] + duration('1s') : variables.delay0[j]"))
	c.add("planned", "variables.sel.exists(s, s)")
	// grace.
	c.add("needed", "variables.planned ? lists.range(size(variables.cands)).filter(j, variables.sel[j]).map(j, "+ceilSeconds("variables.delay1[j] + variables.tVal[j] + duration('2s')")+").max() : 0")
	c.add("current", "object.spec.?terminationGracePeriodSeconds.orValue(30)")
	c.add("target", "variables.current > variables.needed ? variables.current : variables.needed")
	lim := strconv.FormatInt(c.limit, 10)
	c.add("capped", "variables.target > "+lim+" && variables.current <= "+lim)
	c.add("grace", "variables.capped ? "+lim+" : variables.target")
	c.add("graceD", "duration(string(variables.grace) + 's')")
	addFit(c.add, forJ, "lists.range(size(variables.cands))", "variables.delay1[j]", "!variables.kept0[j]",
		"variables.sel[j] && !variables.cands[j].init && variables.cp[j].role == 'proxy'",
		"variables.sel[j] && !variables.cands[j].init && !variables.kept0[j] && variables.cp[j].role == 'upstream'",
		"size(variables.proxyDelays) > 0")

	// Durations as Go prints them, once per container.
	// Most values are the profile's own: its text is in the catalog, and formatting (a long expression) runs
	// only for the others.
	c.add("fmtD1", forJ("variables.delay1[j] == variables.cp[j].delay ? string(variables.cp[j].delayFmt) : "+formatDuration("variables.delay1[j]")))
	c.add("fmtD2", forJ("variables.delay2[j] == variables.cp[j].delay ? string(variables.cp[j].delayFmt) : "+formatDuration("variables.delay2[j]")))
	c.add("fmtT", forJ("variables.tVal[j] == variables.cp[j].timeout ? string(variables.cp[j].timeoutFmt) : "+formatDuration("variables.tVal[j]")))
	c.add("fmtGrace", formatDuration("variables.graceD"))

	// render: the shim volume, foreign mounts, existing hooks, the rendering.
	c.add("shimIdx", "lists.range(size(variables.inits)).filter(i, variables.inits[i].?command.orValue([]) == "+shimCmd+")")
	c.add("volNames", "object.spec.?volumes.orValue([]).map(v, v.name)")
	c.add("vol", "size(variables.shimIdx) > 0 && variables.inits[variables.shimIdx[0]].?volumeMounts.orValue([]).exists(m, m.mountPath == "+lit(mutate.ShimDir)+") ? "+
		"variables.inits[variables.shimIdx[0]].volumeMounts.filter(m, m.mountPath == "+lit(mutate.ShimDir)+")[0].name : "+unique(lit(mutate.ShimVolumeName), "variables.volNames"))
	c.add("dirMounts", "variables.cands.map(x, x.c.?volumeMounts.orValue([]).filter(m, m.mountPath == "+lit(mutate.ShimDir)+").map(m, m.name))")
	c.add("fm", forJ("variables.sel[j] && variables.dirMounts[j].exists(n, n != variables.vol)"))
	c.add("rend", forJ("variables.sel[j] && !variables.fm[j]"))
	c.add("hookShim", "variables.cands.map(x, size("+pre+".?exec.?command.orValue([])) > 0 && x.c.lifecycle.preStop.exec.command[0] == "+lit(mutate.ShimPath)+")")
	c.add("kept", forJ("variables.rend[j] && variables.kept0[j]"))
	c.add("wrapAt", "variables.cmds.map(k, size(k) >= 2 && k[0] == "+lit(mutate.ShimPath)+" && k[1] == 'run' ? lists.range(size(k)).filter(i, i >= 2 && k[i] == '--') : [])")
	c.add("wrapped", "variables.wrapAt.map(w, size(w) > 0)")
	c.add("orig", forJ("variables.wrapped[j] ? variables.cmds[j].slice(variables.wrapAt[j][0] + 1, size(variables.cmds[j])) : variables.cmds[j]"))
	c.add("supEff", forJ("variables.rend[j] && !variables.kept[j] && variables.vVal[j] && size(variables.orig[j]) > 0"))
	c.add("supWarn", forJ("variables.rend[j] && !variables.kept[j] && variables.vVal[j] && size(variables.orig[j]) == 0 && !variables.wrapped[j]"))
	stop := strconv.FormatBool(c.o.Capabilities.StopSignal)
	c.add("kind", forJ("!variables.rend[j] ? '' : variables.kept[j] ? 'kept' : "+
		"variables.sVal[j] == 'SIGTERM' && !variables.supEff[j] ? (variables.delay2[j] > duration('0s') ? 'sleep' : 'none') : "+
		"variables.sVal[j] != 'SIGTERM' && "+stop+" ? 'stop' : variables.supEff[j] ? 'sup' : 'exec'"))
	sleepHook := "dyn({'sleep': {'seconds': " + ceilSeconds("variables.delay2[j]") + "}})"
	if !c.o.Capabilities.PreStopSleep {
		sleepHook = "dyn({'exec': {'command': [" + lit(mutate.ShimPath) + ", 'prestop', '--delay', " + "variables.fmtD2[j]" + ", '--signal', 'none']}})"
	}
	c.add("hook", forJ("variables.kind[j] == 'exec' ? dyn({'exec': {'command': ["+lit(mutate.ShimPath)+", 'prestop', '--delay', "+"variables.fmtD2[j]"+
		", '--signal', string(variables.sVal[j]), '--timeout', "+"variables.fmtT[j]"+"]}}) : "+
		"variables.kind[j] in ['sleep', 'stop', 'sup'] && variables.delay2[j] > duration('0s') ? "+sleepHook+" : dyn({})"))
	shimSleep := "false"
	if !c.o.Capabilities.PreStopSleep {
		shimSleep = "(variables.kind[j] in ['sleep', 'stop', 'sup'] && variables.delay2[j] > duration('0s'))"
	}
	c.add("shimUse", forJ("variables.kind[j] in ['exec', 'sup'] || "+shimSleep))
	checksOn := strconv.FormatBool(c.o.Policy.CheckMode != mutate.CheckModeOff)
	c.add("chk", forJ("variables.rend[j] && "+checksOn+" && variables.cp[j].checks"))
	c.add("needShim", "lists.range(size(variables.cands)).exists(j, variables.shimUse[j] || variables.chk[j])")
	c.add("newCmd", forJ("variables.kind[j] == 'sup' ? ["+lit(mutate.ShimPath)+", 'run'] + (variables.sVal[j] != 'SIGTERM' ? ['--rewrite', 'TERM=' + string(variables.sVal[j]).substring(3)] : []) + ['--'] + variables.orig[j] : variables.orig[j]"))
	c.add("setCmd", forJ("variables.rend[j] && !variables.kept[j] && (variables.kind[j] == 'sup' || variables.wrapped[j])"))
	c.add("usesShim", forJ("variables.rend[j] && ("+
		"(variables.setCmd[j] ? size(variables.newCmd[j]) > 0 && variables.newCmd[j][0] == "+lit(mutate.ShimPath)+" : size(variables.cmds[j]) > 0 && variables.cmds[j][0] == "+lit(mutate.ShimPath)+") || "+
		"(variables.kept[j] ? variables.hookShim[j] : variables.kind[j] == 'exec' || "+shimSleep+"))"))
	c.add("mountAdd", forJ("variables.needShim && variables.usesShim[j] && size(variables.dirMounts[j]) == 0"))
	// record: every container looked at: name=profile, name=profile(kept), or name=- when left alone.
	c.add("injected", forJ("variables.cands[j].name + '=' + (!variables.rend[j] ? '-' : variables.kept[j] ? variables.prof[j] + '(kept)' : variables.prof[j])"))
	// ensureShim and ensureCheck.
	c.add("shimName", "size(variables.shimIdx) > 0 ? variables.inits[variables.shimIdx[0]].name : "+unique(lit(mutate.ShimContainerName), "variables.names"))
	c.add("chkBase", "variables.cands.map(x, "+lit(mutate.CheckContainerPrefix)+" + x.name)")
	c.add("chkAt", forJ("lists.range(size(variables.inits)).filter(i, "+isCheck("variables.inits[i]")+" && variables.inits[i].?env.orValue([]).exists(e, e.name == "+lit(mutate.CheckForEnv)+" && e.?value.orValue('') == variables.cands[j].name))"))
	c.add("chkName", forJ("!variables.chk[j] ? '' : size(variables.chkAt[j]) > 0 ? variables.inits[variables.chkAt[j][0]].name : "+unique("variables.chkBase[j]", "variables.names + [variables.shimName]")))
	c.add("origProgs", forJ("!variables.chk[j] ? '' : "+program("variables.orig[j]")))
	fpmWords := "(variables.orig[j] + variables.args[j])"
	c.add("fpmAt", forJ("!variables.chk[j] ? [] : lists.range(size"+fpmWords+").filter(i, ("+fpmWords+"[i] in ['-y', '--fpm-config'] && i + 1 < size"+fpmWords+") || "+fpmWords+"[i].startsWith('--fpm-config='))"))
	c.add("fpmConfig", forJ("!variables.chk[j] ? '' : size(variables.fpmAt[j]) == 0 ? '' : "+fpmWords+"[variables.fpmAt[j][0]].startsWith('--fpm-config=') && !("+fpmWords+"[variables.fpmAt[j][0]] in ['-y', '--fpm-config']) ? "+
		fpmWords+"[variables.fpmAt[j][0]].substring(13) : "+fpmWords+"[variables.fpmAt[j][0] + 1]"))

	// Engine rules this compiler does not express yet: such pods are left to the webhook, never rendered
	// differently (see Limitations).
	fr := c.fallbackRules("variables.prof[j]", "(variables.cmds[j] + variables.args[j])", "variables.progs[j]")
	flagConds, wrapConds := fr.flagConds, fr.wrapConds
	orFalse := func(conds []string) string {
		if len(conds) == 0 {
			return "false"
		}
		return strings.Join(conds, " || ")
	}
	// Each rule is a branch only when some profile can trigger it, and a cheap test of the container's
	// profile comes first.
	wrapProfiles, flagProfiles := fr.wrapProfiles, fr.flagProfiles
	blocked := "''"
	rule := func(cond, reason string) { blocked = cond + " ? " + lit(reason) + " : " + blocked }
	rule("lists.range(size(variables.cands)).exists(j, variables.chk[j] && size(variables.chkAt[j]) == 0 && size(variables.chkBase[j]) > 63)", "a php-fpm check for a container name longer than 48 characters")
	if len(flagConds) > 0 {
		rule("lists.range(size(variables.cands)).exists(j, variables.sel[j] && variables.prof[j] in "+litList(flagProfiles)+" && ("+orFalse(flagConds)+"))", "a drain timeout set by a command-line flag")
	}
	if len(wrapConds) > 0 {
		rule("lists.range(size(variables.cands)).exists(j, variables.sel[j] && variables.prof[j] in "+litList(wrapProfiles)+" && ("+orFalse(wrapConds)+"))", "a launcher script that does not exec the server (the shim must signal it by name)")
	}
	rule("lists.range(size(variables.cands)).exists(j, variables.sel[j] && variables.cands[j].c.?lifecycle.?stopSignal.hasValue())", "a container with its own lifecycle.stopSignal")
	if len(c.o.Uncompiled) > 0 {
		// The catalog knows them by name and detection by their rules, so the engine's choice is made as
		// in the webhook; their values in the catalog are placeholders nothing reads after this.
		rule("lists.range(size(variables.cands)).exists(j, variables.sel[j] && variables.prof[j] in "+litList(c.o.Uncompiled)+")", uncompiledReason)
	}
	blocked = "variables.unsupported != '' ? variables.unsupported : " + blocked
	c.add("blocked", blocked)
	c.addWarnings()
}

// addFit adds mutate's fit as variables: every delay below the grace period (the API requires a preStop
// sleep shorter than it), a proxy with an ordered upstream one second below that, so the upstream still
// follows it; then an ordered upstream at least the latest proxy + 1s again where a kept proxy hook left it
// shorter, but never past the grace period. each maps over the containers (j), rng is their index range,
// delay1 the delay after ordering, clippable whether container j's delay may be clipped (a kept hook is not),
// proxy and upstream select the ordered roles, hasProxy whether any proxy is ordered. The result:
// variables.clip[j] (the delay was clipped: a warning) and variables.delay2[j]. add declares a variable.
func addFit(add func(name, expr string), each func(string) string, rng, delay1, clippable, proxy, upstream, hasProxy string) {
	add("ordered", "("+hasProxy+" && "+rng+".exists(j, "+upstream+"))")
	less := "(variables.ordered && " + proxy + " ? 2 : 1)"
	add("limS", each("variables.grace > "+less+" ? variables.grace - "+less+" : 0"))
	add("clip", each(clippable+" && "+ceilSeconds(delay1)+" > variables.limS[j]"))
	add("delay2a", each("variables.clip[j] ? duration(string(variables.limS[j]) + 's') : "+delay1))
	add("latest", "("+hasProxy+" ? "+rng+".filter(j, "+proxy+").map(j, variables.delay2a[j]).sort() : [duration('-1s')])")
	after := "variables.latest[size(variables.latest) - 1] + duration('1s')"
	top := "(variables.grace > 1 ? variables.graceD - duration('1s') : duration('0s'))"
	add("delay2", each(upstream+" && "+hasProxy+" && variables.delay2a[j] < "+after+" ? ("+after+" < "+top+" ? "+after+" : "+top+") : variables.delay2a[j]"))
}

// program mirrors profiles.Program for a CEL list of words.
func program(w string) string { return programFrom(w, programFirst(w)) }

// programFirst is the indexes of w that can be the program (wrappers such as tini or bundle exec skipped).
func programFirst(w string) string {
	skip := "['exec', 'dumb-init', 'tini', '--', 'env']"
	return "lists.range(size(" + w + ")).filter(i, !(" + base(w+"[i]") + " in " + skip + ") && !(" + base(w+"[i]") + " == 'bundle' && i + 2 < size(" + w + ") && " + w + "[i + 1] == 'exec'))"
}

// programFrom is program with programFirst(w) given (a precomputed list, so it is not evaluated again).
func programFrom(w, first string) string {
	i0 := first + "[0]"
	b := base(w + "[" + i0 + "]")
	dashM := "lists.range(size(" + w + ")).filter(k, k > " + i0 + " && k + 1 < size(" + w + ") && " + w + "[k] == '-m')"
	return "(size(" + first + ") == 0 ? '' : " + b + ".startsWith('python') ? (size(" + dashM + ") > 0 ? " + base(w+"["+dashM+"[0] + 1]") + " : " + b + ") : " +
		b + ".startsWith('-') ? '' : " + b + ")"
}

// unique mirrors mutate.uniqueName.
func unique(baseName, taken string) string {
	return "(!(" + baseName + " in " + taken + ") ? " + baseName + " : " + baseName + " + '-' + string(lists.range(size(" + taken + ") + 2).filter(i, i >= 2 && !(" + baseName + " + '-' + string(i) in " + taken + "))[0]))"
}

// parser is CEL over a raw annotation value s: whether it parses, its value, the error text.
type parser struct {
	ok, val, err string
}

type parse func(s string) parser

func durationParse(min, max, rangeErr, syntaxErr string) parse {
	return func(s string) parser {
		syn := s + ".trim().matches(" + lit(durSyntax) + ")"
		safe := "size(" + s + ".trim()) <= 20 && !" + s + ".trim().matches('[0-9]{7}')"
		return parser{
			ok:  "(" + syn + " && " + safe + " && duration(" + s + ".trim()) >= duration('" + min + "') && duration(" + s + ".trim()) <= duration('" + max + "'))",
			val: "duration(" + s + ".trim())",
			err: "(" + syn + " ? " + lit(rangeErr) + " : " + lit(syntaxErr) + ")",
		}
	}
}

func signalParse(s string) parser {
	n := s + ".trim().upperAscii()"
	isNum := n + ".matches(" + lit(sigNumber) + ")"
	name := "(" + n + ".startsWith('SIG') ? " + n + " : 'SIG' + " + n + ")"
	nums := "{1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 10: 'SIGUSR1', 12: 'SIGUSR2', 15: 'SIGTERM', 28: 'SIGWINCH'}"
	list := "SIGTERM, SIGQUIT, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH"
	return parser{
		ok:  "(" + isNum + " ? int(" + n + ") in " + nums + " : " + name + " in ['SIGTERM', 'SIGQUIT', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'])",
		val: "(" + isNum + " ? " + nums + "[int(" + n + ")] : " + name + ")",
		err: "(" + isNum + " ? 'signal number ' + string(int(" + n + ")) + ' is not one of " + list + "' : 'unknown signal ' + " + quoteExpr(s) + " + ': want one of " + list + "')",
	}
}

func boolParse(s string) parser {
	v := s + ".trim().lowerAscii()"
	return parser{
		ok:  "(" + v + " in ['true', 'enabled', 'yes', 'false', 'disabled', 'no'])",
		val: "(" + v + " in ['true', 'enabled', 'yes'])",
		err: `'not a boolean (use "true" or "false")'`,
	}
}

// override mirrors mutate.resolve for one setting: the container-specific value, else the pod-wide one, else
// the profile's; every bad value is a problem naming the value used instead.
func (c *compiler) override(v, key, what string, p parse, fromProfile string, isDuration bool) {
	P := mutate.Prefix
	sp, pw := "variables."+v+"sp", "variables."+v+"pw"
	c.add(v+"sp", "variables.cands.map(x, variables.anns[?"+lit(P+key+".")+" + x.name].orValue("+unset+"))")
	c.add(v+"pw", "variables.anns[?"+lit(P+key)+"].orValue("+unset+")")
	c.add(v+"spOk", sp+".map(s, s != "+unset+" && "+p("s").ok+")")
	c.add(v+"pwOk", pw+" != "+unset+" && "+p(pw).ok)
	spOk, pwOk := "variables."+v+"spOk", "variables."+v+"pwOk"
	c.add(v+"Val", forJ(spOk+"[j] ? "+p(sp+"[j]").val+" : "+pwOk+" ? "+p(pw).val+" : "+fromProfile))
	c.add(v+"Src", forJ(spOk+"[j] ? "+lit(P+key+".")+" + variables.cands[j].name + \"'s\" : "+pwOk+" ? "+lit(P+key+"'s")+" : \"the profile's\""))
	val := "variables." + v + "Val[j]"
	var shown string
	switch {
	case isDuration:
		c.add(v+"Fmt", forJ(formatDuration(val)))
		shown = "variables." + v + "Fmt[j]"
	case v == "v":
		shown = "(" + val + " ? 'true' : 'false')"
	default:
		shown = val
	}
	fallback := "'container ' + variables.cands[j].name + ' uses ' + variables." + v + "Src[j] + ' " + what + " ' + " + shown
	c.add(v+"Problems", forJ("!variables.sel[j] ? [] : "+
		"("+sp+"[j] != "+unset+" && !"+spOk+"[j] ? ["+problem(lit(P+key+".")+" + variables.cands[j].name", sp+"[j]", p(sp+"[j]").err, fallback)+"] : []) + "+
		"(!"+spOk+"[j] && "+pw+" != "+unset+" && !"+pwOk+" ? ["+problem(lit(P+key), pw, p(pw).err, fallback)+"] : [])"))
}

// detectList mirrors Catalog.Detect: the first pattern in detection order (profiles in order, each one's
// image patterns, then its command patterns) that matches. A match is one string "order NUL profile NUL kind
// NUL pattern" with order zero-padded, so sort() puts the winner first. Plain names (most patterns) are
// looked up in map literals instead of being compared one by one; only glob patterns are evaluated.
func (c *compiler) detectList(imgName, imgTag, prog string) string {
	exact := map[string]map[string]string{imgName: {}, imgTag: {}, prog: {}}
	var globs []string
	n := 0
	entry := func(name, kind, pat string) string {
		n++
		return fmt.Sprintf("%04d", n) + "\x00" + name + "\x00" + kind + "\x00" + strconv.Quote(pat)
	}
	add := func(subject, name, kind, pat string) {
		if !strings.ContainsAny(pat, `*?[\`) && utf8.ValidString(pat) {
			e := entry(name, kind, pat)
			if _, dup := exact[subject][pat]; !dup { // an earlier pattern wins anyway
				exact[subject][pat] = e
			}
			return
		}
		cond, err := globExpr(subject, pat)
		if err != nil && slices.Contains(c.o.Uncompiled, name) {
			// A rule of a profile left out for this very pattern detects nothing: the only patterns that
			// cannot be written are not UTF-8, and they match nothing the API server stores either.
			return
		}
		e := entry(name, kind, pat)
		if err != nil {
			c.problems = append(c.problems, fmt.Sprintf("profile %s: match.%s %q: %v", name, map[string]string{"image": "images", "command": "commands"}[kind], pat, err))
			return
		}
		if kind == "command" {
			cond = subject + " != '' && " + cond
		}
		globs = append(globs, "("+cond+" ? ["+lit(e)+"] : [])")
	}
	for _, p := range c.detectOrder() {
		for _, pat := range p.Match.Images {
			subject := imgName
			if strings.IndexByte(pat, ':') >= 0 {
				subject = imgTag
			}
			add(subject, p.Name, "image", pat)
		}
		for _, pat := range p.Match.Commands {
			add(prog, p.Name, "command", pat)
		}
	}
	parts := []string{}
	for _, subject := range []string{imgName, imgTag, prog} {
		m := exact[subject]
		if len(m) == 0 {
			continue
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		kv := make([]string, len(keys))
		for i, k := range keys {
			kv[i] = lit(k) + ": " + lit(m[k])
		}
		lookup := "{" + strings.Join(kv, ", ") + "}"
		parts = append(parts, "("+subject+" in "+lookup+" ? ["+lookup+"["+subject+"]] : [])")
	}
	parts = append(parts, globs...)
	if len(parts) == 0 {
		return "[]"
	}
	return "(" + strings.Join(parts, " + ") + ").sort()"
}

// litList is a CEL list literal of strings.
func litList(vs []string) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = lit(v)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func (c *compiler) meshList() string { return litList(c.o.Policy.MeshProxies) }

// catalogLiteral is the catalog as a CEL map, sorted by name so the rendering is byte-stable.
func (c *compiler) catalogLiteral() string {
	names := sortedUnion(c.catalog.Names(), c.o.Uncompiled)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		p, ok := c.catalog.Get(n)
		if !ok {
			// Uncompiled: known by name, with the default profile's values, which nothing reads (blocked).
			p, _ = c.catalog.Get(c.defProf)
		}
		parts = append(parts, fmt.Sprintf("%s: {'delay': dyn(duration(%s)), 'timeout': dyn(duration(%s)), 'delayFmt': dyn(%s), 'timeoutFmt': dyn(%s), 'signal': dyn(%s), 'role': dyn(%s), 'checks': dyn(%t), 'supervise': dyn(%t)}",
			lit(n), lit(goDur(p.DrainDelay)), lit(goDur(p.DrainTimeout)), lit(p.DrainDelay.String()), lit(p.DrainTimeout.String()), lit(string(p.StopSignal)), lit(string(p.Role)), len(p.Checks) > 0, p.Supervise || c.o.Policy.Supervise))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// detectOrder is the profiles detection tries, in the webhook's order: cluster profiles first, sorted by
// name (profiles.Catalog.Layer), then the built-ins. The Uncompiled ones (Options.Detect has them) take their
// place among the cluster profiles with their own match rules; a built-in whose override was left out stays
// where the built-ins are, as in the compiled catalog.
func (c *compiler) detectOrder() []*profiles.Profile {
	all := c.catalog.All()
	if c.o.Detect == nil || len(c.o.Uncompiled) == 0 {
		return all
	}
	k := 0
	for k < len(all) && all[k].Source != profiles.SourceBuiltin {
		k++
	}
	cluster := append([]*profiles.Profile(nil), all[:k]...)
	for _, n := range c.o.Uncompiled {
		if p, ok := c.o.Detect.Get(n); ok {
			cluster = append(cluster, p)
		}
	}
	sort.SliceStable(cluster, func(i, j int) bool { return cluster[i].Name < cluster[j].Name })
	return append(cluster, all[k:]...)
}

// goDur is a duration literal CEL accepts (CEL duration literals are validated: Go's "1m0s" is fine).
func goDur(d time.Duration) string { return d.String() }

func (c *compiler) addWarnings() {
	var render []string
	if c.defWarn != "" {
		render = append(render, "lists.range(size(variables.cands)).filter(j, variables.sel[j] && variables.psrc[j] == 'cluster default').map(j, "+lit(c.defWarn)+")")
	}
	render = append(render,
		"(variables.capped ? ['lastcall: terminationGracePeriodSeconds capped at "+strconv.FormatInt(c.limit, 10)+" (policy maxGracePeriod "+c.o.Policy.MaxGracePeriod.Duration.String()+"); the longest shutdown needs ' + string(variables.needed)] : [])",
		// fit's warnings come first, for every container (the engine fits all delays before it renders).
		"lists.range(size(variables.cands)).filter(j, variables.sel[j] && variables.clip[j]).map(j, "+
			"'lastcall: container ' + variables.cands[j].name + ': drain delay ' + "+"variables.fmtD1[j]"+" + ' does not fit the grace period ' + "+"variables.fmtGrace"+" + '; using ' + "+"variables.fmtD2[j]"+")",
		"lists.range(size(variables.cands)).filter(j, variables.sel[j]).map(j, "+
			"(variables.fm[j] ? ['lastcall: container ' + variables.cands[j].name + ' already mounts something else at "+mutate.ShimDir+"; left unchanged'] : "+
			"(variables.kept[j] ? ['lastcall: container ' + variables.cands[j].name + ' already has a preStop hook; kept it (policy existingPreStop: keep); its grace period still covers the ' + variables.prof[j] + ' profile'] : []) + "+
			"(variables.rend[j] && variables.hookKind[j] in ['user', 'usersleep'] && !variables.kept[j] ? ['lastcall: container ' + variables.cands[j].name + ': replaced its preStop hook (policy existingPreStop: replace)'] : []) + "+
			"(variables.supWarn[j] ? ['lastcall: container ' + variables.cands[j].name + \": supervision needs an explicit command (the image's entrypoint is unknown to lastcall); rendering without it\"] : []))"+
			").flatten()")
	c.add("warnings", "variables.skip != '' || variables.observe ? [] : variables.blocked != '' ? ['lastcall: policy mode cannot handle this pod (' + variables.blocked + '); admitted without graceful-shutdown injection: use the webhook mode for it'] : "+
		"variables.problemList.map(p, 'lastcall: ' + p) + (variables.planned ? "+strings.Join(render, " + ")+" : [])")
	c.addFastWarnings()
}

// patch is the JSONPatch expression: the engine's edits in the order that keeps indexes valid (container
// edits first, then the init containers at the front, then additions at the end).
func (c *compiler) patch() (string, error) {
	shim, err := c.shimInit()
	if err != nil {
		return "", err
	}
	bp := "(variables.cands[j].init ? '/spec/initContainers/' : '/spec/containers/') + string(variables.cands[j].idx)"
	add := jsonAdd
	remove := func(path string) string { return "JSONPatch{op: 'remove', path: " + path + "}" }
	lc := "variables.cands[j].c.?lifecycle"
	hasLc, hasPost, hasPre, hasStop := lc+".hasValue()", lc+".?postStart.hasValue()", lc+".?preStop.hasValue()", lc+".?stopSignal.hasValue()"
	noHook := "size(variables.hook[j]) == 0 && variables.kind[j] != 'stop'"
	lcOps := "(variables.kept[j] ? [] : " + noHook + " ? (" + hasLc + " ? (!" + hasPost + " ? [" + remove(bp+" + '/lifecycle'") + "] : " +
		"(" + hasPre + " ? [" + remove(bp+" + '/lifecycle/preStop'") + "] : []) + (" + hasStop + " ? [" + remove(bp+" + '/lifecycle/stopSignal'") + "] : [])) : []) : " +
		"!" + hasLc + " ? [" + add(bp+" + '/lifecycle'", "{?'preStop': size(variables.hook[j]) > 0 ? optional.of(variables.hook[j]) : optional.none(), ?'stopSignal': variables.kind[j] == 'stop' ? optional.of(dyn(variables.sVal[j])) : optional.none()}") + "] : " +
		"(size(variables.hook[j]) > 0 ? [" + add(bp+" + '/lifecycle/preStop'", "variables.hook[j]") + "] : " + hasPre + " ? [" + remove(bp+" + '/lifecycle/preStop'") + "] : []) + " +
		"(variables.kind[j] == 'stop' ? [" + add(bp+" + '/lifecycle/stopSignal'", "variables.sVal[j]") + "] : " + hasStop + " ? [" + remove(bp+" + '/lifecycle/stopSignal'") + "] : []))"
	cx := "variables.cands[j].c"
	cmdOps := "(variables.setCmd[j] ? [" + add(bp+" + '/command'", "variables.newCmd[j]") + "] : [])"
	containerOps := "lists.range(size(variables.cands)).filter(j, variables.rend[j]).map(j, " + lcOps + " + " + cmdOps + " + " + mountOps("variables.mountAdd[j]", cx, bp) + ").flatten()"

	shimOps := "(!variables.needShim || size(variables.shimIdx) > 0 ? [] : " +
		"size(variables.inits) == 0 ? [" + add("'/spec/initContainers'", "["+shim+"]") + "] : [" + add("'/spec/initContainers/0'", shim) + "])"
	check, err := c.checkContainer("variables.chkName[j]", "variables.img[j]", cx, "variables.fmtT[j]",
		"(variables.origProgs[j].startsWith('php-fpm') ? ['--binary', string(variables.orig[j][0])] : []) + (variables.fpmConfig[j] != '' ? ['--config', string(variables.fpmConfig[j])] : [])")
	if err != nil {
		return "", err
	}
	c.add("chkIdx", forJ("!variables.chk[j] ? 0 : size(variables.inits) + (size(variables.shimIdx) > 0 ? 0 : 1) + size(lists.range(j).filter(k, variables.chk[k] && size(variables.chkAt[k]) == 0))"))
	at := "'/spec/initContainers/' + string(variables.chkIdx[j])"
	copies := checkCopies(cx, bp, at, "variables.cands[j].name", "variables.mountAdd[j]", "(size(variables.dirMounts[j]) > 0 || variables.mountAdd[j])")
	// A check (or shim) lastcall added earlier is left as it is: other mutators may have added to it since.
	checkOps := "lists.range(size(variables.cands)).filter(j, variables.chk[j] && size(variables.chkAt[j]) == 0).map(j, [" + add("'/spec/initContainers/-'", check) + "] + " + copies + ").flatten()"
	pod := c.podOps("lists.range(size(variables.cands)).exists(j, variables.kind[j] == 'stop')", "size(variables.injected) == 0", "variables.injected.join(',')")
	return "variables.skip != '' ? [] : variables.observe ? " + managedOps(mutate.ManagedObserve) + " : variables.blocked != '' || !variables.planned" + c.strictGuard() + " ? [] : " +
		containerOps + " + " + shimOps + " + " + checkOps + " + " + pod, nil
}

// strictGuard: in strict mode a pod with bad annotations is denied by the validating policy; leave it alone.
func (c *compiler) strictGuard() string {
	if c.o.Policy.Strict {
		return " || size(variables.denyList) > 0"
	}
	return ""
}

const (
	placeholderName   = "\x00name"
	placeholderVolume = "\x00volume"
)

// shimContainer is mutate's shim init container with placeholders for the name and the volume.
func (c *compiler) shimContainer() corev1.Container {
	p := c.o.Policy
	t, f := true, false
	uid := int64(65532)
	return corev1.Container{
		Name:            placeholderName,
		Image:           p.Shim.Image,
		ImagePullPolicy: p.Shim.ImagePullPolicy,
		Command:         []string{mutate.ShimImagePath, "install", mutate.ShimDir},
		Resources:       *p.Shim.Resources.DeepCopy(),
		VolumeMounts:    []corev1.VolumeMount{{Name: placeholderVolume, MountPath: mutate.ShimDir}},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: &t, RunAsUser: &uid, RunAsGroup: &uid, AllowPrivilegeEscalation: &f, ReadOnlyRootFilesystem: &t,
			Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
	}
}

// CELValue writes a Go value (through its JSON form) as a CEL literal that passes the API server's checks,
// as the compiled policies write their constant values.
func CELValue(v any) (string, error) { return celValue(v, nil) }

// celValue writes a Go value (through its JSON form) as a CEL literal. Map values are wrapped in dyn() so
// literals with mixed value types pass the server's homogeneous-literal check. Strings equal to a key of
// subst are replaced by that CEL expression.
func celValue(v any, subst map[string]string) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	var x any
	if err := json.Unmarshal(data, &x); err != nil {
		return "", err
	}
	var b strings.Builder
	writeCEL(&b, x, subst)
	return b.String(), nil
}

func writeCEL(b *strings.Builder, x any, subst map[string]string) {
	switch t := x.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("{")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(lit(k) + ": dyn(")
			writeCEL(b, t[k], subst)
			b.WriteString(")")
		}
		b.WriteString("}")
	case []any:
		b.WriteString("[")
		for i, e := range t {
			if i > 0 {
				b.WriteString(", ")
			}
			writeCEL(b, e, subst)
		}
		b.WriteString("]")
	case string:
		if e, ok := subst[t]; ok {
			b.WriteString(e)
		} else {
			b.WriteString(lit(t))
		}
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case float64:
		b.WriteString(strconv.FormatInt(int64(t), 10))
	case nil:
		b.WriteString("null")
	}
}

// addFastWarnings gives the warning policy a short way for the pods the mutating policy has just handled.
// The warning policy sees the pod after the mutation, and for most pods the record annotation the mutation
// wrote already says everything a warning could (see handledPod). Every other pod takes the full way
// (variables.warnings), which re-runs the engine on the mutated pod.
func (c *compiler) addFastWarnings() {
	var supervised []string
	for _, n := range c.catalog.Names() {
		if p, _ := c.catalog.Get(n); p.Supervise || c.o.Policy.Supervise {
			supervised = append(supervised, n)
		}
	}
	rec := "variables.anns[?" + lit(mutate.AnnotationInjected) + "].orValue('').split(',')"
	// Supervised: every rendered container when the pod-wide switch is on, none when it is off (handledPod:
	// one of plainValues), else those whose profile supervises. Most pods have neither switch nor such a
	// profile, and pay one lookup.
	noCommand := func(entries string) string {
		return entries + ".map(e, e.substring(0, e.indexOf('='))).filter(n, " +
			"object.spec.containers.exists(x, x.name == n && size(x.?command.orValue([])) == 0)).map(n, 'lastcall: container ' + n + " +
			"\": supervision needs an explicit command (the image's entrypoint is unknown to lastcall); rendering without it\")"
	}
	byProfile := "[]"
	if len(supervised) > 0 {
		byProfile = noCommand(rec + ".filter(e, e.substring(e.indexOf('=') + 1) in " + litList(supervised) + ")")
	}
	sup := "variables.anns[?" + lit(mutate.AnnotationSupervise) + "]"
	cheap := "(!" + sup + ".hasValue() ? " + byProfile + " : " + sup + ".value() in " + litList(plainTrue) + " ? " +
		noCommand(rec+".filter(e, !e.endsWith('=-'))") + " : [])"
	c.addWarn("warningsFast", "variables.skip != '' || variables.observe ? [] : variables.nsProblems.map(p, 'lastcall: ' + p.substring(p.lastIndexOf('\\u0000') + 1)) + "+cheap)
}

// handledPod is CEL over the pod alone (a matchCondition of the warning policies): the record annotation
// is there, every container in it rendered with a known profile or skipped ("-": with no per-container
// annotation only native sidecars and mesh proxies are, and they warn of nothing; no "(kept)"), and no other
// lastcall annotation is on the pod but those a plain pod may have (plainPod: a pod-wide profile that exists,
// a pod-wide supervision switch; no bad values, no overrides). With no profile whose drain can exceed
// maxGracePeriod (and a cluster default profile that exists), such a pod's only possible warnings are a
// bad namespace default and a supervised container without a command: warningsFast. "" when the catalog
// rules the short way out.
func (c *compiler) handledPod() string {
	if c.defWarn != "" || c.maxNeeded() > c.limit {
		return ""
	}
	a := "object.metadata.annotations"
	return "has(" + a + ") && " + lit(mutate.AnnotationInjected) + " in " + a + " && " +
		a + ".all(k, !k.startsWith(" + lit(mutate.Prefix) + ") || k in [" + lit(mutate.AnnotationInjected) + ", " + lit(mutate.AnnotationVersion) + "] || " +
		"(k == " + lit(mutate.AnnotationProfile) + " && " + a + "[k] in " + c.plainValues(mutate.AnnotationProfile) + ") || " +
		"(k == " + lit(mutate.AnnotationSupervise) + " && " + a + "[k] in " + c.plainValues(mutate.AnnotationSupervise) + ")) && " +
		a + "[" + lit(mutate.AnnotationInjected) + "].split(',').all(e, e.matches('^[^=]+=(-|[a-z0-9][a-z0-9.-]*)$') && e.substring(e.indexOf('=') + 1) in " + litList(append([]string{"-"}, c.catalog.Names()...)) + ")"
}

// maxNeeded is the longest grace (seconds) any pod without lastcall annotations can need with this catalog:
// the slowest profile's delay plus timeout plus 2s, an upstream's delay at least the slowest proxy's + 1s.
// User preStop sleeps kept as delays are not covered: their pods are recorded "(kept)" and take the full way.
func (c *compiler) maxNeeded() int64 {
	var proxy time.Duration
	for _, p := range c.catalog.All() {
		if p.Role == profiles.RoleProxy && p.DrainDelay > proxy {
			proxy = p.DrainDelay
		}
	}
	var max int64
	for _, p := range c.catalog.All() {
		d := p.DrainDelay
		if p.Role == profiles.RoleUpstream && proxy > 0 && d < proxy+time.Second {
			d = proxy + time.Second
		}
		if n := int64((d + p.DrainTimeout + 2*time.Second + time.Second - 1) / time.Second); n > max {
			max = n
		}
	}
	return max
}

// plainPod is CEL over the pod alone (a matchCondition) for the pods most clusters create: no lastcall
// annotation but a pod-wide profile the catalog compiles (or "auto") and a pod-wide supervision switch
// (so no per-container overrides, no bad values, no record of an earlier pass, and every native sidecar is
// skipped), no init container that runs the shim (none of lastcall's own: the engine knows its init
// containers by their commands), and no container with a lifecycle, a mount at lastcall's directory or a
// command that runs the shim. The user's init containers (migrations, a mesh's iptables set-up, waiting for a
// database, a log shipper as a native sidecar) are common and change only where lastcall's go and what the
// record lists; so is choosing the profile for the whole pod by annotation (the documented way), which changes
// only the profile. For such pods many stages of the engine have a known result; the mutating policy for them
// (plainPolicy) is the engine written again for just such pods, and the general policy takes every other pod.
// The annotation values are matched exactly (no trimming, no case folding): any other spelling the engine
// accepts takes the general way, which parses it as the engine does.
func (c *compiler) plainPod() string {
	a := "object.metadata.annotations"
	prof, sup := lit(mutate.AnnotationProfile), lit(mutate.AnnotationSupervise)
	return "(!has(" + a + ") || (!" + a + ".exists(k, k.startsWith(" + lit(mutate.Prefix) + ") && !(k in [" + prof + ", " + sup + "])) && " +
		"(!(" + prof + " in " + a + ") || " + a + "[" + prof + "] in " + c.plainValues(mutate.AnnotationProfile) + ") && " +
		"(!(" + sup + " in " + a + ") || " + a + "[" + sup + "] in " + c.plainValues(mutate.AnnotationSupervise) + "))) && " +
		"(!has(object.spec.initContainers) || object.spec.initContainers.all(x, " +
		"!has(x.command) || size(x.command) == 0 || !(x.command[0] in [" + lit(mutate.ShimPath) + ", " + lit(mutate.ShimImagePath) + "]))) && " +
		"object.spec.containers.all(x, !has(x.lifecycle) && (!has(x.volumeMounts) || x.volumeMounts.all(m, m.mountPath != " + lit(mutate.ShimDir) + ")) && " +
		"(!has(x.command) || size(x.command) == 0 || x.command[0] != " + lit(mutate.ShimPath) + "))"
}

// plainTrue are the spellings of lastcall.dev/supervise that turn supervision on in a plain pod.
var plainTrue = []string{"true", "enabled", "yes"}

// plainValues is the set (litSet) of values a plain pod's key may have: for lastcall.dev/profile a profile
// the catalog compiles or "auto", for lastcall.dev/supervise plainTrue and the spellings of false (the
// engine's parseBool takes these, and more).
func (c *compiler) plainValues(key string) string {
	if key == mutate.AnnotationProfile {
		return litSet(append(c.catalog.Names(), profiles.NameAuto))
	}
	return litSet(append(slices.Clone(plainTrue), "false", "disabled", "no"))
}

// litSet is a CEL map literal with the strings as keys: membership in it costs the same whatever its size
// (a list's costs its length, which the API server's cost estimate multiplies by every size it cannot bound).
func litSet(vs []string) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = lit(v) + ": true"
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

var varRef = regexp.MustCompile(`variables\.([A-Za-z_][A-Za-z0-9_]*)`)

// prune keeps the variables the roots need, in order: the API server builds every declared variable into
// each evaluation's activation, so unused ones cost on every pod.
func prune(vars []variable, roots ...string) []variable {
	need := map[string]bool{}
	mark := func(expr string) {
		for _, m := range varRef.FindAllStringSubmatch(expr, -1) {
			need[m[1]] = true
		}
	}
	for _, r := range roots {
		mark(r)
	}
	for i := len(vars) - 1; i >= 0; i-- {
		if need[vars[i].name] {
			mark(vars[i].expr)
		}
	}
	out := make([]variable, 0, len(vars))
	for _, v := range vars {
		if need[v.name] {
			out = append(out, v)
		}
	}
	return out
}

// fallbackRules are the CEL conditions, per profile, of the engine rules policy mode leaves to the webhook:
// drain timeouts set by command-line flags (over words, the command and args) and launcher scripts (over
// prog, the program); prof is the container's profile. Profiles are listed so a cheap membership test can
// come first.
type fallbackRules struct {
	flagProfiles, wrapProfiles, flagConds, wrapConds []string
}

func (c *compiler) fallbackRules(prof, words, prog string) fallbackRules {
	var r fallbackRules
	for _, p := range c.catalog.All() {
		if p.Timeout != nil {
			var fl []string
			for _, f := range append(append([]string(nil), p.Timeout.Hard...), p.Timeout.Soft...) {
				fl = append(fl, lit(f))
			}
			list := "[" + strings.Join(fl, ", ") + "]"
			r.flagProfiles = append(r.flagProfiles, p.Name)
			r.flagConds = append(r.flagConds, "("+prof+" == "+lit(p.Name)+" && "+words+".exists(w, w in "+list+" || "+list+".exists(f, f.startsWith('--') && w.startsWith(f + '='))))")
		}
		for _, w := range p.Wrappers {
			cond, err := globExpr(prog, w.Command)
			if err != nil {
				c.problems = append(c.problems, fmt.Sprintf("profile %s: wrapper %q: %v", p.Name, w.Command, err))
				continue
			}
			r.wrapProfiles = append(r.wrapProfiles, p.Name)
			r.wrapConds = append(r.wrapConds, "("+prof+" == "+lit(p.Name)+" && "+cond+")")
		}
	}
	return r
}
