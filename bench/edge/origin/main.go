// Command origin is the origin server of the edge benchmark: it serves a
// 1 KB object at /1k and a 100 KB object at /100k, both cacheable for an
// hour with an ETag and a Last-Modified, and answers any query string with
// the same object (the 90/10 mix makes misses with unique query strings).
package main

import (
	"bytes"
	"flag"
	"log"
	"net/http"
	"strconv"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.61:18001", "listen address")
	flag.Parse()

	lastMod := time.Now().Add(-24 * time.Hour).UTC().Format(http.TimeFormat)
	object := func(size int, etag string) http.HandlerFunc {
		body := bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz012345"), size/32)
		length := strconv.Itoa(len(body))
		return func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Cache-Control"] = []string{"public, max-age=3600"}
			h["Content-Type"] = []string{"application/octet-stream"}
			h["Content-Length"] = []string{length}
			h["Etag"] = []string{etag}
			h["Last-Modified"] = []string{lastMod}
			w.Write(body)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/1k", object(1024, `"1k"`))
	mux.Handle("/100k", object(100*1024, `"100k"`))
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("origin listening on %s", *addr)
	log.Fatal(srv.ListenAndServe())
}
