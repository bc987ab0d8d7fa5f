// Package control is turnout's admin surface: the control API (HTTP+JSON on
// the unix socket `control`, and on TCP `control_listen` with bearer
// tokens), the read-only status page with its JSON and the liveness probe,
// and the metrics listener that serves them beside /metrics. It drives the
// daemon only through switcher.Switcher's exported methods, answers in the
// wire types of package api, and hands its listeners to Switcher.Serve,
// which opens and shuts them down with the proxy's. Client is the other
// side, for the CLI and any Go program: it reads the same api types and
// turns answers into typed errors. The reference is docs/control-api.md.
package control
