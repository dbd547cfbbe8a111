package app

import "github.com/scalestack/scalestack/pkg/settings"

// SessionMode is where sessions live (Config.Sessions, --sessions).
type SessionMode string

// Session modes.
const (
	// SessionsMemory keeps sessions in this app process: a restart or
	// another app node logs users out, so stage 3 needs sticky routing.
	SessionsMemory SessionMode = "memory"
	// SessionsShared keeps them in the store, written through and cached
	// in the cache tier (stage 7): any app node serves any user.
	SessionsShared SessionMode = "shared"
)

// String returns the mode as written.
func (m SessionMode) String() string { return string(m) }

// Set takes memory or shared (flag.Value).
func (m *SessionMode) Set(s string) error {
	v, err := settings.OneOf(s, SessionsMemory, SessionsShared)
	if err == nil {
		*m = v
	}
	return err
}

// ReadMode is where store reads go (Config.Reads, --reads).
type ReadMode string

// Read modes.
const (
	// ReadsPrimary reads every value from the primary: strong reads.
	ReadsPrimary ReadMode = "primary"
	// ReadsReplicas reads from any replica that has applied the user's
	// last write (stage 5), else from the primary.
	ReadsReplicas ReadMode = "replicas"
)

// String returns the mode as written.
func (m ReadMode) String() string { return string(m) }

// Set takes primary or replicas (flag.Value).
func (m *ReadMode) Set(s string) error {
	v, err := settings.OneOf(s, ReadsPrimary, ReadsReplicas)
	if err == nil {
		*m = v
	}
	return err
}

// JobMode is how side effects run (Config.Jobs, --jobs).
type JobMode string

// Job modes.
const (
	// JobsInline runs each side effect inside the request (stages 1-7).
	JobsInline JobMode = "inline"
	// JobsQueue publishes it to the job queue through the job outbox, for
	// the workers (stage 8).
	JobsQueue JobMode = "queue"
)

// String returns the mode as written.
func (m JobMode) String() string { return string(m) }

// Set takes inline or queue (flag.Value).
func (m *JobMode) Set(s string) error {
	v, err := settings.OneOf(s, JobsInline, JobsQueue)
	if err == nil {
		*m = v
	}
	return err
}

// ServiceMode is where the blog's services run (Config.ServiceMode,
// --app-services).
type ServiceMode string

// Service modes.
const (
	// ServicesLocal runs every service in the app's process over
	// Deps.Store (stages 1-9).
	ServicesLocal ServiceMode = "local"
	// ServicesRemote makes the app a gateway (stage 10): Deps.Services are
	// clients of the service nodes, sessions come from the users service
	// (Deps.SessionStore), and the services write their side effects as
	// events themselves.
	ServicesRemote ServiceMode = "remote"
)

// String returns the mode as written.
func (m ServiceMode) String() string { return string(m) }

// Set takes local or remote (flag.Value).
func (m *ServiceMode) Set(s string) error {
	v, err := settings.OneOf(s, ServicesLocal, ServicesRemote)
	if err == nil {
		*m = v
	}
	return err
}
