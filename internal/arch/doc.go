// Package arch holds no code: its test checks that the packages import one
// another as docs/ARCHITECTURE.md says they may.
package arch
