package policy

import (
	"strconv"
	"strings"

	"github.com/lastcall-dev/lastcall/pkg/mutate"
)

// The mutating policy for plain pods (plainPod) is the engine written again for what such a pod can be, in
// wide stages: the API server runs each CEL variable as its own program and every comprehension at a price
// that dwarfs the work inside it (docs/performance.md), so here one comprehension computes everything a
// container needs at one level of the engine's dependencies, and values a stage needs once are inlined.
// On a plain pod it must give exactly what the general policy (build, patch) gives; the parity test runs
// every golden case whose pod is plain through it.
//
// Per container j (object.spec.containers[j]; the init containers of a plain pod are the user's: lastcall's
// go before them (the shim) and after them (the checks), and its native sidecars are skipped, recorded only):
//
//	variables.a[j]     {w: the words (command, else args), first: index of the program word}
//	variables.pg[j]    [program, image name, image name:tag]
//	variables.det[j]   detection hits, best first (detectList)
//	variables.prof[j]  the profile, "" for a container left alone (a mesh proxy)
//	variables.d1[j]    the drain delay after ordering (an upstream waits for the slowest proxy + 1s)
//	variables.delay2[j] d1 fitted below the grace period (addFit)
//	variables.kind[j]  how it is rendered: "" (left alone), none, sleep, stop, sup, exec
//	variables.hook[j]  the preStop hook, {} for none
//	variables.fpm[j]   php-fpm's config file for the check of container j, '' for none
func (c *compiler) plainPolicy() (vars []variable, patch string, err error) {
	add := func(name, expr string) { vars = append(vars, variable{name, expr}) }
	ctr := "object.spec.containers[j]"
	n := "size(object.spec.containers)"
	each := func(expr string) string { return "lists.range(" + n + ").map(j, " + expr + ")" }
	cp := func(field string) string { return "variables.catalog[variables.prof[j]]." + field }
	cmd := ctr + ".?command.orValue([])"
	words := "(size(" + cmd + ") > 0 ? " + ctr + ".command : " + ctr + ".?args.orValue([]))"

	add("anns", "object.metadata.?annotations.orValue({})")
	add("labels", "object.metadata.?labels.orValue({})")
	add("nsLabels", "namespaceObject.metadata.?labels.orValue({})")
	add("nsAnns", "namespaceObject.metadata.?annotations.orValue({})")
	// Engine.podSkip for what reaches a plain pod's policy: mirror pods, Windows and the opt-out annotation
	// are ruled out by its matchCondition.
	add("skip", "variables.labels[?"+lit(mutate.LabelInject)+"].orValue('') == 'disabled' ? 'pod-opt-out-label' : "+
		"variables.nsLabels[?"+lit(mutate.LabelInject)+"].orValue('') == 'disabled' ? 'namespace-opt-out' : ''")
	add("observe", "variables.nsLabels[?"+lit(mutate.LabelInject)+"].orValue('') == "+lit(mutate.ManagedObserve))
	add("catalog", c.catalogLiteral())
	add("nsDef", "variables.nsAnns[?"+lit(mutate.AnnotationDefaultProfile)+"].orValue('')")
	add("nsProf", "variables.nsDef in variables.catalog ? variables.nsDef : ''")
	add("names", "object.spec.containers.map(x, x.name) + object.spec.?initContainers.orValue([]).map(x, x.name)")

	// Program (profiles.Program) in two steps, so the program word's index is found once.
	imgBase := "(" + ctr + ".?image.orValue('').indexOf('@') >= 0 ? " + ctr + ".image.substring(0, " + ctr + ".image.indexOf('@')) : " + ctr + ".?image.orValue(''))"
	imgBase = "(" + imgBase + ").substring((" + imgBase + ").lastIndexOf('/') + 1)"
	add("a", each("{'w': dyn("+words+"), 'first': dyn("+programFirst(words)+"), 'ib': dyn("+imgBase+")}"))
	imgBase = "string(variables.a[j].ib)"
	add("pg", each("["+programFrom("variables.a[j].w", "variables.a[j].first")+", "+
		"("+imgBase+".indexOf(':') >= 0 ? "+imgBase+".substring(0, "+imgBase+".indexOf(':')) : "+imgBase+"), "+
		"("+imgBase+".indexOf(':') >= 0 ? "+imgBase+" : "+imgBase+" + ':latest')]"))
	add("det", each(c.detectList("variables.pg[j][1]", "variables.pg[j][2]", "variables.pg[j][0]")))
	// The pod-wide profile annotation (plainPod: a compiled profile or "auto", which is not one) beats
	// detection, but not for mesh proxies: a pod-wide profile was written for the app.
	add("podProf", "variables.anns[?"+lit(mutate.AnnotationProfile)+"].orValue('')")
	add("prof", each(ctr+".name in "+c.meshList()+" ? '' : variables.podProf in variables.catalog ? variables.podProf : "+
		"size(variables.det[j]) > 0 ? variables.det[j][0].split('\\u0000')[1] : "+
		"variables.nsProf != '' ? variables.nsProf : "+lit(c.defProf)))
	add("planned", "variables.prof.exists(p, p != '')")

	// order and grace.
	add("proxyDelays", "variables.prof.filter(p, p != '' && variables.catalog[p].role == 'proxy').map(p, variables.catalog[p].delay).sort()")
	last := "variables.proxyDelays[size(variables.proxyDelays) - 1] + duration('1s')"
	add("d1", each("variables.prof[j] == '' ? duration('0s') : "+cp("role")+" == 'upstream' && size(variables.proxyDelays) > 0 && "+cp("delay")+" < "+last+" ? "+last+" : "+cp("delay")))
	add("needed", "variables.planned ? lists.range("+n+").filter(j, variables.prof[j] != '').map(j, "+ceilSeconds("variables.d1[j] + "+cp("timeout")+" + duration('2s')")+").max() : 0")
	lim := strconv.FormatInt(c.limit, 10)
	add("current", "object.spec.?terminationGracePeriodSeconds.orValue(30)")
	add("target", "variables.current > variables.needed ? variables.current : variables.needed")
	add("grace", "variables.target > "+lim+" && variables.current <= "+lim+" ? "+lim+" : variables.target")
	add("graceD", "duration(string(variables.grace) + 's')")
	addFit(add, each, "lists.range("+n+")", "variables.d1[j]", "true", "variables.prof[j] != '' && "+cp("role")+" == 'proxy'",
		"variables.prof[j] != '' && "+cp("role")+" == 'upstream'", "size(variables.proxyDelays) > 0")

	// render.
	// Supervision: the pod-wide annotation (plainPod: one of plainValues) beats the profile's.
	add("sup", "variables.anns[?"+lit(mutate.AnnotationSupervise)+"].orValue('')")
	supEff := "((variables.sup == '' ? " + cp("supervise") + " == true : variables.sup in " + litList(plainTrue) + ") && size(" + cmd + ") > 0)"
	stop := strconv.FormatBool(c.o.Capabilities.StopSignal)
	add("kind", each("variables.prof[j] == '' ? '' : "+cp("signal")+" == 'SIGTERM' && !"+supEff+" ? (variables.delay2[j] > duration('0s') ? 'sleep' : 'none') : "+
		cp("signal")+" != 'SIGTERM' && "+stop+" ? 'stop' : "+supEff+" ? 'sup' : 'exec'"))
	fmtD2 := "(variables.delay2[j] == " + cp("delay") + " ? string(" + cp("delayFmt") + ") : " + formatDuration("variables.delay2[j]") + ")"
	fmtT := "string(" + cp("timeoutFmt") + ")"
	sleepy := "(variables.kind[j] in ['sleep', 'stop', 'sup'] && variables.delay2[j] > duration('0s'))"
	sleepHook := "dyn({'sleep': {'seconds': " + ceilSeconds("variables.delay2[j]") + "}})"
	shimSleep := "false"
	if !c.o.Capabilities.PreStopSleep {
		sleepHook = "dyn({'exec': {'command': [" + lit(mutate.ShimPath) + ", 'prestop', '--delay', " + fmtD2 + ", '--signal', 'none']}})"
		shimSleep = sleepy
	}
	add("hook", each("variables.kind[j] == 'exec' ? dyn({'exec': {'command': ["+lit(mutate.ShimPath)+", 'prestop', '--delay', "+fmtD2+
		", '--signal', string("+cp("signal")+"), '--timeout', "+fmtT+"]}}) : "+sleepy+" ? "+sleepHook+" : dyn({})"))
	checksOn := strconv.FormatBool(c.o.Policy.CheckMode != mutate.CheckModeOff)
	chk := func(j string) string {
		return "(variables.kind[" + j + "] != '' && " + checksOn + " && variables.catalog[variables.prof[" + j + "]].checks == true)"
	}
	usesShim := "(variables.kind[j] in ['exec', 'sup'] || " + shimSleep + ")"
	add("needShim", "lists.range("+n+").exists(j, "+usesShim+" || "+chk("j")+")")
	add("shimName", unique(lit(mutate.ShimContainerName), "variables.names"))
	add("volNames", "object.spec.?volumes.orValue([]).map(v, v.name)")
	add("vol", unique(lit(mutate.ShimVolumeName), "variables.volNames"))
	chkBase := lit(mutate.CheckContainerPrefix) + " + " + ctr + ".name"
	// php-fpm's config file for a check container (mutate's fpmConfig: the first -y, --fpm-config or
	// --fpm-config= in command and args), '' for none; the words bound once by a one-element map.
	fpmWords := "(" + cmd + " + " + ctr + ".?args.orValue([]))"
	add("fpm", each("!"+chk("j")+" ? '' : ["+fpmWords+"].map(w, lists.range(size(w)).map(i, (w[i] in ['-y', '--fpm-config'] && i + 1 < size(w)) || w[i].startsWith('--fpm-config='), "+
		"w[i].startsWith('--fpm-config=') && !(w[i] in ['-y', '--fpm-config']) ? w[i].substring(13) : w[i + 1]) + [''])[0][0]"))

	// Engine rules the plain policy leaves to the webhook, as the general one does (build's blocked).
	fr := c.fallbackRules("variables.prof[j]", "("+cmd+" + "+ctr+".?args.orValue([]))", "variables.pg[j][0]")
	flagProfiles, wrapProfiles, flagConds, wrapConds := fr.flagProfiles, fr.wrapProfiles, fr.flagConds, fr.wrapConds
	long := chk("j") + " && size(" + chkBase + ") > 63"
	rules := []string{long}
	blocked := "lists.range(" + n + ").exists(j, " + long + ") ? 'a php-fpm check for a container name longer than 48 characters' : ''"
	if len(flagConds) > 0 {
		flag := "variables.prof[j] in " + litList(flagProfiles) + " && (" + strings.Join(flagConds, " || ") + ")"
		rules = append(rules, "("+flag+")")
		blocked = "lists.range(" + n + ").exists(j, " + flag + ") ? 'a drain timeout set by a command-line flag' : " + blocked
	}
	if len(wrapConds) > 0 {
		wrap := "variables.prof[j] in " + litList(wrapProfiles) + " && (" + strings.Join(wrapConds, " || ") + ")"
		rules = append(rules, "("+wrap+")")
		blocked = "lists.range(" + n + ").exists(j, " + wrap + ") ? 'a launcher script that does not exec the server (the shim must signal it by name)' : " + blocked
	}
	if len(c.o.Uncompiled) > 0 {
		// Detected, or the namespace default (the catalog knows them by name, with placeholder values).
		u := "(variables.prof[j] in " + litList(c.o.Uncompiled) + ")"
		rules = append(rules, u)
		blocked = "lists.range(" + n + ").exists(j, " + u + ") ? " + lit(uncompiledReason) + " : " + blocked
	}
	// One pass finds whether any rule applies (almost never); only then the rules in order name it.
	add("blocked", "!lists.range("+n+").exists(j, "+strings.Join(rules, " || ")+") ? '' : "+blocked)

	// The patch, in the general policy's order.
	shim, err := c.shimInit()
	if err != nil {
		return nil, "", err
	}
	bp := "'/spec/containers/' + string(j)"
	mountAdd := "(variables.needShim && " + usesShim + ")"
	lcOps := "(size(variables.hook[j]) == 0 && variables.kind[j] != 'stop' ? [] : [" + jsonAdd(bp+" + '/lifecycle'",
		"{?'preStop': size(variables.hook[j]) > 0 ? optional.of(variables.hook[j]) : optional.none(), ?'stopSignal': variables.kind[j] == 'stop' ? optional.of(dyn("+cp("signal")+")) : optional.none()}") + "])"
	newCmd := "[" + lit(mutate.ShimPath) + ", 'run'] + (" + cp("signal") + " != 'SIGTERM' ? ['--rewrite', 'TERM=' + string(" + cp("signal") + ").substring(3)] : []) + ['--'] + " + cmd
	cmdOps := "(variables.kind[j] == 'sup' ? [" + jsonAdd(bp+" + '/command'", newCmd) + "] : [])"
	containerOps := "lists.range(" + n + ").filter(j, variables.kind[j] != '').map(j, " + lcOps + " + " + cmdOps + " + " + mountOps(mountAdd, ctr, bp) + ").flatten()"
	nInits := "size(object.spec.?initContainers.orValue([]))"
	shimOps := "(!variables.needShim ? [] : " + nInits + " == 0 ? [" + jsonAdd("'/spec/initContainers'", "["+shim+"]") + "] : [" + jsonAdd("'/spec/initContainers/0'", shim) + "])"

	check, err := c.checkContainer(unique(chkBase, "variables.names + [variables.shimName]"), ctr+".?image.orValue('')", ctr, fmtT,
		"(size("+cmd+") > 0 && variables.pg[j][0].startsWith('php-fpm') ? ['--binary', string("+ctr+".command[0])] : []) + "+
			"(variables.fpm[j] != '' ? ['--config', string(variables.fpm[j])] : [])")
	if err != nil {
		return nil, "", err
	}
	// The c-th check (of container j) is appended: init container 1 + (the user's) + c, after the shim.
	at := "'/spec/initContainers/' + string(1 + " + nInits + " + c)"
	checkOps := "lists.range(" + n + ").filter(j, " + chk("j") + ").transformList(c, j, [" + jsonAdd("'/spec/initContainers/-'", check) + "] + " +
		checkCopies(ctr, bp, at, ctr+".name", mountAdd, mountAdd) + ").flatten()"
	// The record: the native sidecars first (skipped: no annotation names them), then the app containers.
	sidecars := "object.spec.?initContainers.orValue([]).filter(x, x.?restartPolicy.orValue('') == 'Always').map(x, x.name + '=-')"
	injected := "(" + sidecars + " + lists.range(" + n + ").map(j, " + ctr + ".name + '=' + (variables.kind[j] == '' ? '-' : variables.prof[j]))).join(',')"
	patch = "variables.skip != '' ? [] : variables.observe ? " + managedOps(mutate.ManagedObserve) + " : variables.blocked != '' || !variables.planned ? [] : " +
		containerOps + " + " + shimOps + " + " + checkOps + " + " + c.podOps("variables.kind.exists(k, k == 'stop')", "", injected)
	return vars, patch, nil
}
