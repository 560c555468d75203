package policy

import "github.com/lastcall-dev/lastcall/pkg/mutate"

// The JSON Patch pieces both mutating policies (patch and plainPolicy) write the same way. cx is the CEL of
// the container being edited, bp its JSON Pointer, at the pointer of its check container.

func jsonAdd(path, value string) string {
	return "JSONPatch{op: 'add', path: " + path + ", value: " + value + "}"
}

func jsonCopy(from, path string) string {
	return "JSONPatch{op: 'copy', from: " + from + ", path: " + path + "}"
}

// shimMount mounts lastcall's volume (variables.vol) read-only at the shim directory.
var shimMount = "{'name': dyn(variables.vol), 'mountPath': dyn(" + lit(mutate.ShimDir) + "), 'readOnly': dyn(true)}"

// shimInit is mutate's shim init container as a CEL literal, named variables.shimName.
func (c *compiler) shimInit() (string, error) {
	return celValue(c.shimContainer(), map[string]string{placeholderName: "variables.shimName", placeholderVolume: "variables.vol"})
}

// mountOps adds shimMount to the container when cond holds.
func mountOps(cond, cx, bp string) string {
	return "(" + cond + " ? (" + cx + ".?volumeMounts.hasValue() ? [" + jsonAdd(bp+" + '/volumeMounts/-'", shimMount) + "] : [" + jsonAdd(bp+" + '/volumeMounts'", "["+shimMount+"]") + "]) : [])"
}

// checkContainer is the php-fpm check init container: the app's image, the shim's check command (tail adds
// --binary and --config), the policy's resources. Its env, envFrom, securityContext and mounts come from
// checkCopies.
func (c *compiler) checkContainer(name, image, cx, budget, tail string) (string, error) {
	res, err := celValue(c.o.Policy.Checks.Resources, nil)
	if err != nil {
		return "", err
	}
	cmd := "[" + lit(mutate.ShimPath) + ", 'check', 'php-fpm', '--budget', " + budget + ", '--mode', " + lit(c.o.Policy.CheckMode) + "] + " + tail
	return "{'name': dyn(" + name + "), 'image': dyn(" + image + "), ?'imagePullPolicy': " + cx + ".?imagePullPolicy, 'command': dyn(" + cmd + "), " +
		"?'workingDir': " + cx + ".?workingDir, 'resources': dyn(" + res + "), " +
		"'terminationMessagePolicy': dyn('FallbackToLogsOnError'), 'terminationMessagePath': dyn('/dev/termination-log')}", nil
}

// checkCopies gives the check container at `at` the app's env (plus the container it checks), envFrom,
// securityContext and mounts. The check runs in the app's image with the app's env, mounts and
// securityContext: JSON Patch copies them from the app container (the typed object's parts cannot be
// values), after the container edits gave the app its shim mount (mountAdd), so the copied mounts end with
// it as the engine's do; hasDir says the app mounts the shim directory already.
func checkCopies(cx, bp, at, name, mountAdd, hasDir string) string {
	copyOp := func(field string) string {
		return "(" + cx + ".?" + field + ".hasValue() ? [" + jsonCopy(bp+" + '/"+field+"'", at+" + '/"+field+"'") + "] : [])"
	}
	checkFor := "{'name': " + lit(mutate.CheckForEnv) + ", 'value': string(" + name + ")}"
	env := "(" + cx + ".?env.hasValue() ? [" + jsonCopy(bp+" + '/env'", at+" + '/env'") + ", " + jsonAdd(at+" + '/env/-'", checkFor) + "] : [" + jsonAdd(at+" + '/env'", "["+checkFor+"]") + "])"
	mounts := "((" + cx + ".?volumeMounts.hasValue() || " + mountAdd + ") ? [" + jsonCopy(bp+" + '/volumeMounts'", at+" + '/volumeMounts'") + "] + " +
		"(" + hasDir + " ? [] : [" + jsonAdd(at+" + '/volumeMounts/-'", shimMount) + "]) : [" + jsonAdd(at+" + '/volumeMounts'", "["+shimMount+"]") + "])"
	return env + " + " + copyOp("envFrom") + " + " + copyOp("securityContext") + " + " + mounts
}

// podOps are the pod-level additions after the containers: lastcall's volume when the shim is needed, the
// grace period, spec.os when a stopSignal is set (stop: CEL, true for some container), the record
// (injected: CEL of its text; none when empty holds) with the version, and the managed label.
func (c *compiler) podOps(stop, empty, injected string) string {
	volume := "{'name': dyn(variables.vol), 'emptyDir': dyn({})}"
	vol := "(variables.needShim && !(variables.vol in variables.volNames) ? (object.spec.?volumes.hasValue() ? [" + jsonAdd("'/spec/volumes/-'", volume) + "] : [" + jsonAdd("'/spec/volumes'", "["+volume+"]") + "]) : [])"
	grace := "[" + jsonAdd("'/spec/terminationGracePeriodSeconds'", "variables.grace") + "]"
	os := "(" + stop + " && !object.spec.?os.hasValue() ? [" + jsonAdd("'/spec/os'", "{'name': 'linux'}") + "] : [])"
	guard := ""
	if empty != "" {
		guard = empty + " ? [] : "
	}
	ann := "(" + guard + "object.metadata.?annotations.hasValue() ? [" +
		jsonAdd("'/metadata/annotations/' + jsonpatch.escapeKey("+lit(mutate.AnnotationInjected)+")", injected) + ", " +
		jsonAdd("'/metadata/annotations/' + jsonpatch.escapeKey("+lit(mutate.AnnotationVersion)+")", lit(c.o.Version)) + "] : [" +
		jsonAdd("'/metadata/annotations'", "{"+lit(mutate.AnnotationInjected)+": "+injected+", "+lit(mutate.AnnotationVersion)+": "+lit(c.o.Version)+"}") + "])"
	return vol + " + " + grace + " + " + os + " + " + ann + " + " + managedOps(mutate.ManagedInject)
}

// managedOps sets the lastcall.dev/managed label to v.
func managedOps(v string) string {
	return "(object.metadata.?labels.hasValue() ? [" + jsonAdd("'/metadata/labels/' + jsonpatch.escapeKey("+lit(mutate.LabelManaged)+")", lit(v)) + "] : [" +
		jsonAdd("'/metadata/labels'", "{"+lit(mutate.LabelManaged)+": "+lit(v)+"}") + "])"
}
