// Command ratelat sends GET requests at a fixed rate (open loop, as wrk2
// does) and prints latency percentiles. Each latency is measured from the
// moment the request was due, not from when a connection was free, so a
// stalled server cannot hide its queueing (no coordinated omission).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	neturl "net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// conn is one keep-alive connection speaking just enough HTTP/1.1 to send a
// GET and read a Content-Length response. A Go http.Client costs several
// times the CPU per request, which on a shared 2-core machine would be taken
// from the proxy under test.
type conn struct {
	nc net.Conn
	br *bufio.Reader
}

func dial(addr string) (*conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10)}, nil
}

var errStatus = errors.New("status is not 200")

func (c *conn) get(req []byte) error {
	_ = c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(req); err != nil {
		return err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	ok := bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) || bytes.HasPrefix(line, []byte("HTTP/1.0 200 "))
	length, closing := -1, false
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, err = strconv.Atoi(string(value))
			if err != nil {
				return err
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			closing = true
		}
	}
	if length < 0 {
		return errors.New("response without Content-Length")
	}
	if _, err := c.br.Discard(length); err != nil {
		return err
	}
	if closing {
		return io.EOF
	}
	if !ok {
		return errStatus
	}
	return nil
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080/", "target URL")
	rate := flag.Int("rate", 1000, "requests per second")
	dur := flag.Duration("duration", 10*time.Second, "measured duration")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured warm-up at the same rate")
	conns := flag.Int("conns", 128, "concurrent requests (and keep-alive connections) at most")
	flag.Parse()
	if *rate < 1 || *conns < 1 {
		fmt.Fprintln(os.Stderr, "ratelat: -rate and -conns must be positive")
		os.Exit(2)
	}

	u, err := neturl.Parse(*url)
	if err != nil || u.Scheme != "http" {
		fmt.Fprintln(os.Stderr, "ratelat: -url must be an http:// URL")
		os.Exit(2)
	}
	path := u.RequestURI()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: ratelat\r\n\r\n")

	due := make(chan time.Time, *conns)
	var errs, sent atomic.Int64
	hists := make([]*hdrhistogram.Histogram, *conns)
	measureFrom := time.Now().Add(*warmup)
	var wg sync.WaitGroup
	for w := 0; w < *conns; w++ {
		h := hdrhistogram.New(1, int64(30*time.Second/time.Microsecond), 3)
		hists[w] = h
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *conn
			for at := range due {
				var err error
				if c == nil {
					c, err = dial(u.Host)
				}
				if c != nil {
					err = c.get(req)
					if err != nil {
						c.nc.Close()
						c = nil
					}
				}
				if at.Before(measureFrom) {
					continue
				}
				sent.Add(1)
				if err != nil {
					errs.Add(1)
					continue
				}
				_ = h.RecordValue(int64(time.Since(at) / time.Microsecond))
			}
			if c != nil {
				c.nc.Close()
			}
		}()
	}

	start := time.Now()
	total := int64(float64(*rate) * (*warmup + *dur).Seconds())
	interval := time.Second / time.Duration(*rate)
	fmt.Fprintf(os.Stderr, "ratelat: %d req/s to %s for %v (+%v warm-up)\n", *rate, *url, *dur, *warmup)
	// Requests are released in batches of those due, then the scheduler
	// sleeps until the next is due: one timer per batch rather than per
	// request keeps the generator's own cost low.
	for next, lastReport := int64(0), int64(0); next < total; {
		due1 := min(int64(time.Since(start)/interval)+1, total)
		for ; next < due1; next++ {
			due <- start.Add(time.Duration(next) * interval)
		}
		if s := next / int64(*rate); s > lastReport {
			lastReport = s
			fmt.Fprintf(os.Stderr, "ratelat: %ds\n", s)
		}
		if d := time.Until(start.Add(time.Duration(next) * interval)); d > 0 {
			time.Sleep(d)
		}
	}
	close(due)
	wg.Wait()
	elapsed := time.Since(measureFrom)

	all := hdrhistogram.New(1, int64(30*time.Second/time.Microsecond), 3)
	for _, h := range hists {
		all.Merge(h)
	}
	ms := func(q float64) float64 { return float64(all.ValueAtQuantile(q)) / 1000 }
	fmt.Printf("RESULT rate=%d achieved=%.0f requests=%d errors=%d p50=%.3f p90=%.3f p99=%.3f p999=%.3f max=%.3f\n",
		*rate, float64(sent.Load())/elapsed.Seconds(), sent.Load(), errs.Load(),
		ms(50), ms(90), ms(99), ms(99.9), float64(all.Max())/1000)
}
