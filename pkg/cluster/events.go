package cluster

import (
	"sync"
)

// EventKind says what happened to a member.
type EventKind int

const (
	// EventJoin: a member became alive (new, or back after dead or left).
	EventJoin EventKind = iota + 1
	// EventUpdate: an alive member changed its metadata (roles, addresses,
	// state).
	EventUpdate
	// EventLeave: a member was declared dead or left; Member.Status says
	// which.
	EventLeave
)

func (k EventKind) String() string {
	switch k {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventLeave:
		return "leave"
	}
	return "unknown"
}

// Event is a change of one member. Member is the member's state after the
// change.
type Event struct {
	Kind   EventKind
	Member Member
}

// subscription delivers events to one subscriber without ever blocking the
// gossip goroutines that produce them. Events wait in a queue holding at
// most one event per member: a newer event for a member replaces the one
// still waiting (coalescing), so a slow subscriber skips intermediate states
// but always ends up with each member's latest one, and the queue is
// bounded by the number of members.
type subscription struct {
	out    chan Event
	wake   chan struct{} // capacity 1: "the queue is not empty"
	done   chan struct{} // closed to stop the goroutine
	exited chan struct{} // closed when the goroutine has returned
	stop   sync.Once

	mu      sync.Mutex
	order   []string         // member names in the order their events queued
	pending map[string]Event // latest event per name in order
	onMerge func()           // counts coalesced events
}

func newSubscription(buffer int, onMerge func()) *subscription {
	return &subscription{
		out:     make(chan Event, buffer),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		exited:  make(chan struct{}),
		pending: make(map[string]Event),
		onMerge: onMerge,
	}
}

// push queues ev; it never blocks.
func (s *subscription) push(ev Event) {
	name := ev.Member.Name
	s.mu.Lock()
	if old, ok := s.pending[name]; ok {
		// A subscriber that has not seen the join yet must still learn that
		// the member is new, whatever changed since.
		if old.Kind == EventJoin && ev.Kind == EventUpdate {
			ev.Kind = EventJoin
		}
		if s.onMerge != nil {
			s.onMerge()
		}
	} else {
		s.order = append(s.order, name)
	}
	s.pending[name] = ev
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) pop() (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.order) == 0 {
		return Event{}, false
	}
	name := s.order[0]
	s.order = s.order[1:]
	ev := s.pending[name]
	delete(s.pending, name)
	return ev, true
}

// run moves queued events to out until close; it owns out and closes it.
func (s *subscription) run() {
	defer close(s.exited)
	defer close(s.out)
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		}
		for {
			ev, ok := s.pop()
			if !ok {
				break
			}
			select {
			case s.out <- ev:
			case <-s.done:
				return
			}
		}
	}
}

// close stops the goroutine and waits for it; safe to call more than once.
func (s *subscription) close() {
	s.stop.Do(func() { close(s.done) })
	<-s.exited
}
