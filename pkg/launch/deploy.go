package launch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// A deploy restarts a stage-10 service's instances one at a time, so that
// the service never stops serving: each instance is stopped with SIGTERM
// (the node marks itself draining in membership, waits for the gateways to
// stop picking it, finishes the calls in flight and exits), started again
// with the same flags and data, and waited for until it is ready and every
// gateway sees it up again; then the next. A service with one running
// instance gets a second one for the time of the deploy (a surge, as a
// rolling update with maxSurge 1 does), removed at the end: otherwise its
// requests would fail while the only instance restarts.
//
// The node binary is the stack's, DIR/bin/node: a deploy restarts the
// instances on whatever it is now.

// Phases of a DeployStep.
const (
	DeploySurge    = "surge"    // an instance was added for the deploy
	DeployStopping = "stopping" // SIGTERM sent: the instance drains
	DeployStopped  = "stopped"  // the process has exited
	DeployReady    = "ready"    // started again, ready and seen by the gateways
	DeploySkipped  = "skipped"  // not running: left as it is
	DeployRemoved  = "removed"  // the surge instance was removed again
)

// DeployStep is one line of a deploy's progress.
type DeployStep struct {
	Node  string `json:"node"`
	Phase string `json:"phase"`
	// Took is how long the step took: the stop for DeployStopped, the
	// start for DeployReady.
	Took time.Duration `json:"took,omitempty"`
	// Detail is the line a person reads.
	Detail string `json:"detail"`
}

// Deployed is what a deploy did.
type Deployed struct {
	Service string `json:"service"`
	// Restarted are the instances restarted, in order.
	Restarted []string `json:"restarted"`
	// Surge is the instance added for the deploy and removed after it, ""
	// when the service had two or more running instances.
	Surge string        `json:"surge,omitempty"`
	Took  time.Duration `json:"took"`
}

// EventDeploy is a deploy's beginning, end or failure, as node up prints it.
const EventDeploy = "deploy"

// Deploy restarts the running instances of service one at a time (see the
// top of this file), reporting each step to progress (which may be nil).
// It stops at the first instance that does not come back ready within
// ReadyTimeout, with an error that names it; the instances after it are
// left running as they were.
func (l *Launcher) Deploy(ctx context.Context, service string, progress func(DeployStep)) (Deployed, error) {
	began := time.Now()
	out := Deployed{Service: service}
	step := func(s DeployStep) {
		l.log.Info("deploy", "service", service, "node", s.Node, "phase", s.Phase, "took", s.Took)
		if progress != nil {
			progress(s)
		}
	}
	instances, err := l.beginDeploy(service)
	if err != nil {
		return out, err
	}
	defer l.endDeploy(service)

	var running []string
	for _, n := range instances {
		if n.Running {
			running = append(running, n.Name)
		} else {
			step(DeployStep{Node: n.Name, Phase: DeploySkipped, Detail: fmt.Sprintf("%s is not running (%s): left as it is; `%s start %s` starts it", n.Name, cmp.Or(n.Exit, "never started"), l.command(), n.Name)})
		}
	}
	if len(running) == 0 {
		return out, fmt.Errorf("no instance of %s is running: nothing to deploy; `%s start %s` starts one", service, l.command(), instances[0].Name)
	}
	l.emit(Event{Kind: EventDeploy, Node: running[0], Group: service, Detail: fmt.Sprintf("deploy of %s: restarting %s one at a time", service, strings.Join(running, ", "))})

	if len(running) == 1 {
		began := time.Now()
		n, err := l.AddNode(ctx, "service", service)
		if err != nil {
			return out, l.deployFailed(service, fmt.Errorf("%s has one running instance, and adding a second for the deploy failed (nothing was restarted): %w", service, err))
		}
		if err := l.waitSeen(ctx, n.Name); err != nil {
			return out, l.deployFailed(service, fmt.Errorf("%s was added for the deploy but %w (nothing was restarted; `%s rm %s` removes it)", n.Name, err, l.command(), n.Name))
		}
		out.Surge = n.Name
		step(DeployStep{Node: n.Name, Phase: DeploySurge, Took: time.Since(began),
			Detail: fmt.Sprintf("%s added for the deploy in %.1fs, so that %s keeps an instance while %s restarts", n.Name, time.Since(began).Seconds(), service, running[0])})
	}

	for i, name := range running {
		if err := l.restartInstance(ctx, name, step); err != nil {
			rest := ""
			if left := running[i+1:]; len(left) > 0 {
				rest = "; not restarted: " + strings.Join(left, ", ")
			}
			if out.Surge != "" {
				rest += fmt.Sprintf("; %s, added for the deploy, keeps serving (`%s rm %s` removes it)", out.Surge, l.command(), out.Surge)
			}
			return out, l.deployFailed(service, fmt.Errorf("deploy of %s stopped at %s: %w%s", service, name, err, rest))
		}
		out.Restarted = append(out.Restarted, name)
	}

	if out.Surge != "" {
		rm, err := l.RemoveNode(ctx, out.Surge, false)
		if err != nil {
			return out, l.deployFailed(service, fmt.Errorf("every instance of %s was restarted, but removing %s, added for the deploy, failed: %w", service, out.Surge, err))
		}
		step(DeployStep{Node: out.Surge, Phase: DeployRemoved, Took: rm.StopTook,
			Detail: fmt.Sprintf("%s, added for the deploy, drained and removed in %.1fs", out.Surge, rm.StopTook.Seconds())})
	}
	out.Took = time.Since(began)
	l.emit(Event{Kind: EventDeploy, Node: running[len(running)-1], Group: service,
		Detail: fmt.Sprintf("deploy of %s done: %s restarted in %.1fs", service, strings.Join(out.Restarted, ", "), out.Took.Seconds())})
	return out, nil
}

// restartInstance stops one instance gracefully, starts it again with the
// same flags and data, and waits until it is ready and the gateways see it.
func (l *Launcher) restartInstance(ctx context.Context, name string, step func(DeployStep)) error {
	l.mu.Lock()
	c := l.procs[name]
	l.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%s exited before its turn", name)
	}
	step(DeployStep{Node: name, Phase: DeployStopping, Detail: fmt.Sprintf("%s: stopping (it drains: marks itself draining, finishes its calls, exits)", name)})
	began := time.Now()
	if err := l.stopChild(ctx, c); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	took := time.Since(began)
	how := l.node(name).Exit
	step(DeployStep{Node: name, Phase: DeployStopped, Took: took, Detail: fmt.Sprintf("%s: stopped in %.1fs (%s); starting it again", name, took.Seconds(), how)})
	began = time.Now()
	n, err := l.StartNode(ctx, name)
	if err != nil {
		return fmt.Errorf("it did not come back ready: %w", err)
	}
	if err := l.waitSeen(ctx, name); err != nil {
		return err
	}
	took = time.Since(began)
	step(DeployStep{Node: name, Phase: DeployReady, Took: took, Detail: fmt.Sprintf("%s: ready again in %.1fs (pid %d)", name, took.Seconds(), n.PID)})
	return nil
}

// beginDeploy returns the instances of service, in stack order, and marks
// a deploy of it as running: two at once would stop two instances at once.
func (l *Launcher) beginDeploy(service string) ([]Node, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return nil, errors.New("node up is stopping")
	}
	var instances []Node
	var services []string
	for _, n := range l.st.Nodes {
		if n.Service == "" {
			continue
		}
		if !slices.Contains(services, n.Service) {
			services = append(services, n.Service)
		}
		if n.Service == service {
			instances = append(instances, n)
		}
	}
	switch {
	case len(services) == 0:
		return nil, fmt.Errorf("%s runs no services: deploy restarts a service's instances, which stage 10 runs (`%s up --stage 10`)", l.st.Spec, l.st.Command())
	case len(instances) == 0:
		return nil, fmt.Errorf("no service %q in the stack: services are %s", service, strings.Join(services, ", "))
	case l.deploying[service]:
		return nil, fmt.Errorf("a deploy of %s is already running", service)
	}
	if l.deploying == nil {
		l.deploying = map[string]bool{}
	}
	l.deploying[service] = true
	return instances, nil
}

func (l *Launcher) endDeploy(service string) {
	l.mu.Lock()
	delete(l.deploying, service)
	l.mu.Unlock()
}

// deployFailed reports err as the deploy's end in node up's terminal and
// returns it.
func (l *Launcher) deployFailed(service string, err error) error {
	l.emit(Event{Kind: EventDeploy, Group: service, Detail: "deploy failed: " + err.Error()})
	return err
}

// command is the stack's command, as the hints name it.
func (l *Launcher) command() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.Command()
}

// waitSeen waits until every running gateway (app and worker nodes, which
// call the services) sees node name alive and up in membership, so that
// the next instance is stopped only once this one takes calls again; or
// until ReadyTimeout.
func (l *Launcher) waitSeen(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.ReadyTimeout)
	defer cancel()
	client := &http.Client{Timeout: 500 * time.Millisecond}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var blind []string
		for _, n := range l.State().Nodes {
			if !n.Running || !slices.Contains(n.Roles, "app") && !slices.Contains(n.Roles, "worker") {
				continue
			}
			var st nodeStatus
			if !get(ctx, client, "http://"+n.Admin+"/status", &st) || st.Name != n.Name {
				continue // a gateway that does not answer does not call anyone either
			}
			if !slices.ContainsFunc(st.Members, func(m memberView) bool { return m.Name == name && m.Status == "alive" && m.State == "up" }) {
				blind = append(blind, n.Name)
			}
		}
		if len(blind) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not see %s up in membership after %s", strings.Join(blind, ", "), name, l.cfg.ReadyTimeout)
		case <-tick.C:
		}
	}
}

// memberView is what the launcher reads of a member in a node's /status.
type memberView struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	State  string `json:"state"`
}
