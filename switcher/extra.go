package switcher

// extraListeners are the listeners besides the proxy's: the control API
// (control.go) and the metrics and status page (metrics.go).
func (s *Switcher) extraListeners() []extraListener {
	return append(s.controlListeners(), s.metricsListeners()...)
}
