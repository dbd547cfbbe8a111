//go:build !race

package nodebin

const raceEnabled = false
