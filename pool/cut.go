package pool

// CutInFlight cuts the requests still in flight on the lean client to p's
// servers, waiting for a response head or reading a body: each fails at
// once, as a timeout. For a drain whose time ran out (Drain returned more
// than zero); net/http's transport ends its requests with their context.
func (p *Pool) CutInFlight() {
	for _, s := range p.Servers() {
		s.transport.Load().lean.AbortBusy()
	}
}
