package faultrun

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Table renders the runs as the tables in Markdown: one row per
// run with the failover times and the correctness outcomes, then the
// errors during each fault by status, then the writes of each run.
func Table(rs []*Result) string {
	var b strings.Builder
	b.WriteString("| run | kill primary → first write ack (s) | partition primary → first write ack (s) | pause replica → failed writes | new epochs per fault | acknowledged writes lost | applied twice | failed but committed (posts / sign-ups) | read-your-writes violations (checks) | 401s | store nodes converged | welcome e-mails: users / lost / duplicated / stray | failed sign-ups committed → e-mailed |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		var epochs []string
		for _, f := range r.Faults {
			epochs = append(epochs, strconv.Itoa(len(f.NewEpochs)))
		}
		converged := "yes"
		if !r.Converged {
			converged = "**no**"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %d / %d | %s (%d) | %s | %s | %d / %s / %s / %s | %d → %d |\n",
			r.Run,
			r.perFault(KillPrimary, func(f FaultResult) string { return seconds(f.FirstAck) }),
			r.perFault(PartitionPrimary, func(f FaultResult) string { return seconds(f.FirstAck) }),
			r.perFault(PauseReplica, func(f FaultResult) string { return strconv.Itoa(f.FailedWrites) }),
			strings.Join(epochs, " "),
			want0(r.AckedLost.OK+r.AckedLost.Failed), want0(r.AppliedTwice),
			r.FailedCommitted.OK, r.FailedCommitted.Failed,
			want0(r.RYW.Violations), r.RYW.Checks,
			want0(r.Unauthorized), converged,
			r.Users, want0(r.MailsLost), want0(r.MailsDuplicated), want0(r.MailsStray),
			r.FailedSignupsCommitted, r.FailedSignupsMailed)
	}

	faults := faultColumns(rs)
	b.WriteString("\nErrors during each fault (every failed request from the fault to the next, by HTTP status or transport error; the node hit first):\n\n| run |")
	for _, f := range faults {
		b.WriteString(" " + f.title() + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(faults)) + "\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %d |", r.Run)
		for _, f := range faults {
			b.WriteString(" " + r.perFault(f, func(fr FaultResult) string {
				return fr.Node + ": " + errorCounts(fr.Errors)
			}) + " |")
		}
		b.WriteString("\n")
	}

	b.WriteString("\nWrites of each run (posts and sign-ups: acknowledged / failed; errors before the first fault):\n\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "- run %d: posts %d / %d, sign-ups %d / %d, read-backs unchecked %d; before the first fault: %s",
			r.Run, r.Posts.OK, r.Posts.Failed, r.Signups.OK, r.Signups.Failed, r.RYW.Unchecked, errorCounts(r.Before))
		if m := r.TargetMisses(); len(m) > 0 {
			fmt.Fprintf(&b, "; targets missed: %s", strings.Join(m, "; "))
		}
		if p := r.Problems(); len(p) > 0 {
			fmt.Fprintf(&b, "; **problems**: %s", strings.Join(p, "; "))
		}
		for _, n := range r.Notes {
			b.WriteString("; " + n)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// perFault formats each fault of kind f in the run with cell, " / "
// between repeats; "–" when the run had none.
func (r *Result) perFault(f Fault, cell func(FaultResult) string) string {
	var out []string
	for _, fr := range r.Faults {
		if fr.Fault == f {
			out = append(out, cell(fr))
		}
	}
	if len(out) == 0 {
		return "–"
	}
	return strings.Join(out, " / ")
}

// faultColumns is the kinds of fault the runs made, in schedule order.
func faultColumns(rs []*Result) []Fault {
	var out []Fault
	for _, r := range rs {
		for _, f := range r.Faults {
			if !slices.Contains(out, f.Fault) {
				out = append(out, f.Fault)
			}
		}
	}
	return out
}

// errorCounts is "17×503, 8×502", most frequent first; "none" when empty.
func errorCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d×%s", m[k], k))
	}
	return strings.Join(parts, ", ")
}

// want0 prints a count that should be 0 in bold when it is not.
func want0(n int) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("**%d**", n)
}
