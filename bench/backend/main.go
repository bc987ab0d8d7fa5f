// Command backend is the upstream of scripts/bench: a plain net/http server
// that answers 200 "hello world\n" to every request, on one or many TCP
// addresses in one process. It is a benchmark tool, not part of turnout.
//
// GET /__last answers "<unix nanoseconds of the last request> <request
// count>", both counting neither /__last nor health checks (/healthz), so that
// the bench can tell when traffic stopped arriving after a switch.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "address to listen on, or a port range such as 127.0.0.1:20000-20999 for one listener per port")
	flag.Parse()
	addrs, err := expand(*listen)
	if err != nil {
		log.Fatalf("backend: -listen %s: %v", *listen, err)
	}

	var last, count atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/__last":
			fmt.Fprintf(w, "%d %d\n", last.Load(), count.Load())
			return
		case "/healthz":
		default:
			last.Store(time.Now().UnixNano())
			count.Add(1)
		}
		// A POST's body is read so that the connection stays reusable.
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "hello world\n")
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errs := make(chan error, len(addrs))
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			log.Fatalf("backend: listen on %s: %v", a, err)
		}
		go func() { errs <- srv.Serve(ln) }()
	}
	fmt.Fprintf(os.Stderr, "backend: listening on %d address(es) from %s\n", len(addrs), addrs[0])
	log.Fatalf("backend: %v", <-errs)
}

// expand turns "host:lo-hi" into one address per port; any other value is
// returned as is.
func expand(listen string) ([]string, error) {
	host, ports, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, err
	}
	lo, hi, ok := strings.Cut(ports, "-")
	if !ok {
		return []string{listen}, nil
	}
	from, err1 := strconv.Atoi(lo)
	to, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || from > to {
		return nil, fmt.Errorf("write a port range as LOW-HIGH, such as 20000-20999")
	}
	var addrs []string
	for p := from; p <= to; p++ {
		addrs = append(addrs, net.JoinHostPort(host, strconv.Itoa(p)))
	}
	return addrs, nil
}
