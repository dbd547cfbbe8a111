// Command backend is the benchmark's app stand-in: an HTTP/1.1 server that
// answers every request with the same small body, and 200 on /readyz.
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
	"strings"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9101", "listen address")
	size := flag.Int("body", 128, "response body size in bytes")
	name := flag.String("name", "backend", "value of the X-Served-By header")
	flag.Parse()

	body := []byte(strings.Repeat("x", *size-1) + "\n")
	length := []string{strconv.Itoa(len(body))}
	ctype := []string{"text/plain"}
	served := []string{*name}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr["Content-Length"] = length
		hdr["Content-Type"] = ctype
		hdr["X-Served-By"] = served
		w.Write(body)
	})
	log.Printf("backend %s listening on %s, body %d bytes", *name, *addr, len(body))
	srv := &http.Server{Addr: *addr, Handler: h}
	log.Fatal(srv.ListenAndServe())
}
