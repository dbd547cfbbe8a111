package node

import "runtime/debug"

// release is the version of this source tree.
const release = "0.1.0"

// Version returns the release and, when the binary was built from a git
// checkout, the commit it was built from.
func Version() string {
	v := release
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			v += " (" + rev + dirty + ")"
		}
	}
	return v
}
