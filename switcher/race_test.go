//go:build race

package switcher

// raceEnabled says the tests run with -race, whose instrumentation makes
// every frame larger and allocates on its own: the budget tests skip then.
const raceEnabled = true
