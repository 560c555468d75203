// Package shim implements lastcall-shim, the static helper that lastcall's webhook wires into pods.
//
// Subcommands:
//
//	install DIR        copy this executable to DIR/lastcall-shim atomically (temp file, fsync, rename), mode 0755
//	prestop [flags]    wait, send the server's graceful signal, and return only once it has exited
//	run [flags] -- CMD supervise CMD as PID 1: forward (and rewrite) signals to it only, reap zombies
//	check php-fpm      verify that php-fpm's process_control_timeout lets in-flight requests finish
//	version            print the version
//
// The kubelet sends the container's stop signal the moment a preStop hook returns, so prestop must not return
// before the server has exited: a graceful SIGQUIT followed by SIGTERM is a fast shutdown for nginx.
//
// Exit codes (the same for every subcommand; run adds its child's status):
//
//	0    success (check in warn mode also exits 0 when it only printed a warning)
//	1    failure: I/O error, signal could not be sent, php-fpm could not be run, ...
//	2    usage: unknown subcommand, bad flag or argument
//	3    prestop: no target process found (or it is not one prestop may signal)
//	4    prestop: the target was still running when --timeout passed
//	5    check: enforce mode and the setting is missing, wrong, or could not be read
//	126  run: CMD could not be executed
//	127  run: CMD was not found
//	N    run: CMD exited with N; 128+n when a signal n killed it
//
// Every failure is one line on stderr prefixed "lastcall-shim: ", because the kubelet shows hook and init
// container output in events where only the first lines survive.
package shim
