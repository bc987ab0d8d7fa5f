// Command load is the failure-counting load generator of scripts/bench: it
// runs -c keep-alive connections against -url for -d, each sending requests
// back to back and alternating GET and POST, and prints how many answers were
// 200, how many were not (by status) and how many failed outright. wrk
// measures throughput better; this tool exists to prove that no request is
// lost during a switch. It is a benchmark tool, not part of turnout.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// tally is one connection's counts, merged at the end.
type tally struct {
	ok       int
	statuses map[int]int
	errors   map[string]int
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080/", "URL to load")
	conns := flag.Int("c", 32, "concurrent keep-alive connections")
	dur := flag.Duration("d", 10*time.Second, "how long to run")
	flag.Parse()

	transport := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()

	tallies := make([]tally, *conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range tallies {
		t := &tallies[i]
		t.statuses, t.errors = map[int]int{}, map[string]int{}
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				status, err := send(client, *url, n%2 == 1)
				switch {
				case err != nil:
					t.errors[err.Error()]++
				case status == http.StatusOK:
					t.ok++
				default:
					t.statuses[status]++
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	total := tally{statuses: map[int]int{}, errors: map[string]int{}}
	for _, t := range tallies {
		total.ok += t.ok
		for k, v := range t.statuses {
			total.statuses[k] += v
		}
		for k, v := range t.errors {
			total.errors[k] += v
		}
	}
	bad, failed := 0, 0
	var details []string
	for k, v := range total.statuses {
		bad += v
		details = append(details, fmt.Sprintf("status %d: %d", k, v))
	}
	for k, v := range total.errors {
		failed += v
		details = append(details, fmt.Sprintf("error %q: %d", k, v))
	}
	sort.Strings(details)
	all := total.ok + bad + failed
	fmt.Printf("requests=%d ok=%d non200=%d errors=%d rps=%.0f\n", all, total.ok, bad, failed, float64(all)/elapsed.Seconds())
	for _, d := range details {
		fmt.Println(d)
	}
	if bad+failed > 0 {
		os.Exit(1)
	}
}

// send makes one request and reads the whole answer, so that the connection
// is reused.
func send(client *http.Client, url string, post bool) (int, error) {
	var (
		resp *http.Response
		err  error
	)
	if post {
		resp, err = client.Post(url, "text/plain", strings.NewReader("ping"))
	} else {
		resp, err = client.Get(url)
	}
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}
