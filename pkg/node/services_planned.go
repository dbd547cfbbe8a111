//go:build !stage10wiring

package node

// stage10Services are the services of issue 18 beside payments, whose
// packages' wire APIs (Register, NewClient) are built on other branches:
// none in this build. Built with -tags stage10wiring, services_stage10.go
// lists them (users, content, search, notifications).
func stage10Services() []serviceSpec { return nil }
