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
// terminal, ask the running `node up` to spawn a process (`node rm` to
// stop one and forget it, `node deploy` to restart a service's instances
// one at a time), so that node up
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
	mux.HandleFunc("POST /v1/deploy", func(w http.ResponseWriter, r *http.Request) {
		// The deploy takes seconds per instance: each step is a JSON line
		// sent as it happens, and the last line is the result or the error.
		// It runs to its end even if `node deploy` goes away (Ctrl-C):
		// cut off between an instance's stop and its start, it would leave
		// that instance down. node up's terminal shows how it ended.
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		flush := http.NewResponseController(w).Flush
		d, err := l.Deploy(context.WithoutCancel(r.Context()), r.FormValue("service"), func(s DeployStep) {
			enc.Encode(deployLine{Step: &s})
			flush()
		})
		if err != nil {
			enc.Encode(deployLine{Error: err.Error()})
			return
		}
		enc.Encode(deployLine{Deployed: &d})
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

// deployLine is one line of /v1/deploy's answer: a step, or at the end
// the result or the error.
type deployLine struct {
	Step     *DeployStep `json:"step,omitempty"`
	Deployed *Deployed   `json:"deployed,omitempty"`
	Error    string      `json:"error,omitempty"`
}

// RequestDeploy asks the `node up` running the stack in dir to deploy
// service (Launcher.Deploy), calling progress with each step as it
// happens.
func RequestDeploy(ctx context.Context, dir, service string, progress func(DeployStep)) (Deployed, error) {
	resp, err := controlPost(ctx, dir, "/v1/deploy", url.Values{"service": {service}})
	if err != nil {
		return Deployed{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var line deployLine
		if err := dec.Decode(&line); err != nil {
			return Deployed{}, fmt.Errorf("node up's answer ended before the deploy did (%v): the ps command shows where it stopped", err)
		}
		switch {
		case line.Step != nil:
			if progress != nil {
				progress(*line.Step)
			}
		case line.Error != "":
			return Deployed{}, errors.New(line.Error)
		case line.Deployed != nil:
			return *line.Deployed, nil
		}
	}
}

func controlNode(ctx context.Context, dir, path string, form url.Values) (Node, error) {
	var n Node
	err := control(ctx, dir, path, form, &n)
	return n, err
}

// control posts form to path of node up's control endpoint and decodes
// its answer into out.
func control(ctx context.Context, dir, path string, form url.Values, out any) error {
	resp, err := controlPost(ctx, dir, path, form)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("read node up's answer: %w", err)
	}
	return nil
}

// controlPost posts form to path of node up's control endpoint and returns
// its answer when it is 200 OK, else the error it carries.
func controlPost(ctx context.Context, dir, path string, form url.Values) (*http.Response, error) {
	st, err := LoadState(dir)
	if err != nil {
		return nil, err
	}
	if !st.StoppedAt.IsZero() || !upAlive(st.UpPID) {
		return nil, fmt.Errorf("node up is not running for %s (it was pid %d): it starts the processes, so start the stack again with `%s up --stage %d --dir %s`", st.Dir, st.UpPID, st.Command(), st.Stage, st.Dir)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+st.Control+path, nil)
	if err != nil {
		return nil, err
	}
	req.URL.RawQuery = form.Encode()
	req.Header.Set("Authorization", "Bearer "+st.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("node up (pid %d) does not answer on its control endpoint %s: %w", st.UpPID, st.Control, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e struct{ Error string }
		if json.NewDecoder(resp.Body).Decode(&e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return nil, errors.New(e.Error)
	}
	return resp, nil
}
