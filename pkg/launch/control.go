package launch

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The control endpoint lets `node start` and `node add`, run in another
// terminal, ask the running `node up` to spawn a process (and `node rm` to
// stop one and forget it), so that node up
// stays the parent of every node: its Ctrl-C stops them all and, on Linux,
// its death takes them with it. It is HTTP on 127.0.0.1:0 (a unix socket
// path in a deep test directory can pass the 104-byte limit), recorded in
// cluster.json with a random token that every request must carry; the file
// is readable by its owner only.

// controlServer is node up's side of the control endpoint.
type controlServer struct {
	srv   *http.Server
	ln    net.Listener
	token string
	done  chan struct{}
}

func openControl(l *Launcher, token string) (*controlServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &controlServer{ln: ln, token: token, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/start", func(w http.ResponseWriter, r *http.Request) {
		n, err := l.StartNode(r.Context(), r.FormValue("name"))
		reply(w, n, err)
	})
	mux.HandleFunc("POST /v1/add", func(w http.ResponseWriter, r *http.Request) {
		n, err := l.AddNode(r.Context(), r.FormValue("role"), r.FormValue("group"))
		reply(w, n, err)
	})
	mux.HandleFunc("POST /v1/rm", func(w http.ResponseWriter, r *http.Request) {
		rm, err := l.RemoveNode(r.Context(), r.FormValue("name"), r.FormValue("purge") == "true")
		reply(w, rm, err)
	})
	c.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) != 1 {
				http.Error(w, `{"error":"bad control token"}`, http.StatusForbidden)
				return
			}
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() {
		defer close(c.done)
		c.srv.Serve(ln)
	}()
	return c, nil
}

func (c *controlServer) addr() string { return c.ln.Addr().String() }

// close stops taking requests; a start in progress is cut off (its
// process is stopped with the others by Close).
func (c *controlServer) close() {
	c.srv.Close()
	<-c.done
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		var se *StartError
		code := http.StatusConflict
		if errors.As(err, &se) {
			code = http.StatusBadGateway
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	json.NewEncoder(w).Encode(v)
}

// RequestStart asks the `node up` running the stack in dir to start node
// name again, and returns it once it is ready.
func RequestStart(ctx context.Context, dir, name string) (Node, error) {
	return controlNode(ctx, dir, "/v1/start", url.Values{"name": {name}})
}

// RequestAdd asks the `node up` running the stack in dir to start one more
// node of role, in store group or service group when the stage runs the
// role in several ("" otherwise), and returns it once it is ready.
func RequestAdd(ctx context.Context, dir, role, group string) (Node, error) {
	return controlNode(ctx, dir, "/v1/add", url.Values{"role": {role}, "group": {group}})
}

// RequestRemove asks the `node up` running the stack in dir to remove node
// name (RemoveNode), deleting its data and log too when purge.
func RequestRemove(ctx context.Context, dir, name string, purge bool) (Removed, error) {
	var rm Removed
	err := control(ctx, dir, "/v1/rm", url.Values{"name": {name}, "purge": {strconv.FormatBool(purge)}}, &rm)
	return rm, err
}

func controlNode(ctx context.Context, dir, path string, form url.Values) (Node, error) {
	var n Node
	err := control(ctx, dir, path, form, &n)
	return n, err
}

// control posts form to path of node up's control endpoint and decodes
// its answer into out.
func control(ctx context.Context, dir, path string, form url.Values, out any) error {
	st, err := LoadState(dir)
	if err != nil {
		return err
	}
	if !st.StoppedAt.IsZero() || !upAlive(st.UpPID) {
		return fmt.Errorf("node up is not running for %s (it was pid %d): it starts the processes, so start the stack again with `%s up --stage %d --dir %s`", st.Dir, st.UpPID, st.Command(), st.Stage, st.Dir)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+st.Control+path, nil)
	if err != nil {
		return err
	}
	req.URL.RawQuery = form.Encode()
	req.Header.Set("Authorization", "Bearer "+st.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("node up (pid %d) does not answer on its control endpoint %s: %w", st.UpPID, st.Control, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.NewDecoder(resp.Body).Decode(&e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return errors.New(e.Error)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("read node up's answer: %w", err)
	}
	return nil
}
