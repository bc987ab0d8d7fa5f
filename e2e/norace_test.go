//go:build !race

package e2e

// raceEnabled says the tests run with -race; the daemon is then built with
// it too.
const raceEnabled = false
