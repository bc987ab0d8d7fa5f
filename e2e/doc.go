// Package e2e holds turnout's end-to-end acceptance tests: they build the real
// binary, start real backend processes (the test binary re-executed) on TCP
// ports and unix sockets, and drive traffic through a real `turnout serve`.
// It owns nothing the product imports and must not be imported by it.
package e2e
