// Package layering holds no code: its test holds the module to its import rules, which the Go toolchain does
// not enforce by itself (internal/ is importable from anywhere in the module, pkg/ included).
//
//   - pkg/ never imports internal/: pkg/ is what other projects may import, internal/ is ours to change.
//   - The offline CLI (cmd/lastcall) links no controller-runtime, client-go or Prometheus: it reads files and
//     writes files, and those libraries would triple its size and start-up work.
//   - The shim (cmd/lastcall-shim) is copied into every pod: it links the standard library, x/sys and
//     pkg/shim and pkg/version only.
//
// Its other test holds the prose to the tree: every path in the README's layout table exists and every package
// sits under one of its rows, and docs/design.md names every lastcall.dev/ key and every rendering.
package layering
