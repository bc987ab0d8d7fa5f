// Command floor is the least a Go reverse proxy can cost per request, for
// scripts/bench to measure turnout against on the same machine: one
// goroutine per client connection and one upstream connection for each,
// each client read passed upstream and each upstream read passed back,
// with no HTTP in between. It is right only for the bench's load (small
// requests, each answered in one read) and is no proxy for anything else.
package main

import (
	"flag"
	"log"
	"net"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27084", "address to listen on")
	upstream := flag.String("upstream", "127.0.0.1:27001", "the backend's address")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go relay(c, *upstream)
	}
}

// relay passes one read at a time from c to a connection of its own to
// upstream, and one back, until either side closes.
func relay(c net.Conn, upstream string) {
	defer c.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		log.Print(err)
		return
	}
	defer u.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := u.Write(buf[:n]); err != nil {
			return
		}
		if n, err = u.Read(buf); err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}
