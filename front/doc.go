// Package front serves turnout's clients: the lean HTTP/1.1 server (Server)
// that reads plain requests itself, the hand-over of every other connection
// to net/http's server, the request rules both hold clients to
// (requestrules.go, and Vet for a listener net/http serves alone), and the
// client side's timeouts (request heads, idle connections, request bodies).
// It hands each request to an http.Handler and knows nothing of pools,
// upstreams or switches; the handler may ask it to watch a waiting client
// (WatchClient) and to write raw header fields (RawHeaderWriter).
package front
