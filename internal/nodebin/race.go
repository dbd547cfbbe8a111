//go:build race

package nodebin

const raceEnabled = true
