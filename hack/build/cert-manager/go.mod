// Not a module of its own: hack/build-cert-manager.sh copies these commands into cert-manager's module source
// (they use its internal packages) and builds them there. This file only keeps them out of lastcall's module.
module lastcall.invalid/cert-manager-commands

go 1.26
