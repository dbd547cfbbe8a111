package tracectx

import (
	"slices"

	"github.com/scalestack/scalestack/pkg/settings"
)

// Start is what an entry point does with a request that carries no usable
// traceparent (--lb-trace-start, --edge-trace-start).
type Start string

// Starts a Config may name.
const (
	// StartSampled starts a trace with the sampled flag: a tracer records
	// every request. The default: the stack is for studying requests.
	StartSampled Start = "sampled"
	// StartUnsampled starts a trace without the sampled flag: the trace id
	// still reaches every log line, a tracer records nothing.
	StartUnsampled Start = "unsampled"
	// StartOff starts no trace: a request without one goes on without one
	// (the app, which logs with a trace id, then starts it).
	StartOff Start = "off"
)

// Starts lists the choices, the default first.
var Starts = []Start{StartSampled, StartUnsampled, StartOff}

// String returns the choice's name.
func (s Start) String() string { return string(s) }

// Set takes a choice's name (flag.Value).
func (s *Start) Set(v string) error {
	c, err := settings.OneOf(v, Starts...)
	if err != nil {
		return err
	}
	*s = c
	return nil
}

// Valid reports whether s is one of Starts.
func (s Start) Valid() bool { return slices.Contains(Starts, s) }
