package faultrun

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/storewatch"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// history builds a run's outcomes and events on a fake clock: the checks
// of a real run are only worth something if each of them fires on the
// history it is meant to catch.
type history struct {
	t0   time.Time
	outs []Outcome
}

func (h *history) at(s float64) time.Time { return h.t0.Add(time.Duration(s * float64(time.Second))) }

func (h *history) add(op, key, id string, start, end float64, status int, storeNode string) {
	h.outs = append(h.outs, Outcome{Op: op, Key: key, ID: id, User: "u", Start: h.at(start), End: h.at(end), Status: status, Store: storeNode, App: "app-1"})
}

// healthy is a run with a kill of db-1 at 10 s (first post acknowledged by
// db-2 at 11.5 s) and a kill of app-1 at 20 s, whose store, e-mails and
// epochs agree with its outcomes.
func healthy() (*Result, []Outcome, storeView, map[string]int, *storewatch.Epochs) {
	h := &history{t0: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	h.add(OpPost, "p post 1", "id1", 1, 1.1, 201, "db-1")
	h.add(OpRead, "id1", "", 1.1, 1.2, 200, "db-2")
	h.add(OpSignup, "ps1", "", 2, 2.1, 201, "db-1")
	h.add(OpPost, "p post 2", "", 9.9, 10.2, 503, "")          // failed, not committed
	h.add(OpPost, "p post 3", "id3", 9.95, 10.01, 201, "db-1") // acknowledged just after the kill, by db-1
	h.add(OpPost, "p post 4", "id4", 11, 11.5, 201, "db-2")
	h.add(OpSignup, "ps2", "", 10.5, 15.5, 0, "") // timed out, committed anyway
	h.outs[len(h.outs)-1].Err = "timeout"
	h.add(OpPost, "p post 5", "", 20.1, 20.2, 502, "")
	h.add(OpPost, "p post 6", "id6", 21, 21.1, 201, "db-2")
	r := &Result{Run: 1, Start: h.at(0), End: h.at(30), Events: []Event{
		{Fault: KillPrimary, Node: "db-1", At: h.at(10), Back: h.at(14), Ready: h.at(15)},
		{Fault: KillApp, Node: "app-1", At: h.at(20), Back: h.at(24), Ready: h.at(25)},
	}}
	view := storeView{
		postsByID:    map[string]string{"id1": "p post 1", "id3": "p post 3", "id4": "p post 4", "id6": "p post 6"},
		postsByTitle: map[string]int{"p post 1": 1, "p post 3": 1, "p post 4": 1, "p post 6": 1},
		users:        map[string]string{"pu0": "pu0@faults.test", "ps1": "ps1@faults.test", "ps2": "ps2@faults.test"},
	}
	mails := map[string]int{"pu0@faults.test": 1, "ps1@faults.test": 1, "ps2@faults.test": 1}
	watch := storewatch.NewEpochs()
	watch.Record("db-1", server.ReplicationStatus{Role: server.RolePrimary, Epoch: 2}, h.at(-5))
	watch.Record("db-2", server.ReplicationStatus{Role: server.RolePrimary, Epoch: 3}, h.at(11.2))
	return r, h.outs, view, mails, watch
}

func TestEvaluateHealthyRun(t *testing.T) {
	r, outs, view, mails, watch := healthy()
	r.Converged = true
	r.evaluate(outs, RYW{Checks: 1}, view, mails, watch)
	if p := r.Problems(); len(p) > 0 {
		t.Fatalf("Problems() = %q, want none", p)
	}
	kill := r.Faults[0]
	// Post 3 was acknowledged after the kill by the node killed (its
	// answer was on its way): the first write of the new primary is post
	// 4's, 1.5 s after the kill.
	if got, want := kill.FirstAck, 1500*time.Millisecond; got != want {
		t.Errorf("kill primary: FirstAck = %v, want %v", got, want)
	}
	if got, want := kill.NewEpochs, []uint64{3}; !slices.Equal(got, want) {
		t.Errorf("kill primary: NewEpochs = %v, want %v", got, want)
	}
	if got, want := errorCounts(kill.Errors), "1×503, 1×timeout"; got != want {
		t.Errorf("kill primary: errors %q, want %q", got, want)
	}
	if kill.FailedWrites != 2 {
		t.Errorf("kill primary: FailedWrites = %d, want 2", kill.FailedWrites)
	}
	if got, want := errorCounts(r.Faults[1].Errors), "1×502"; got != want {
		t.Errorf("kill app: errors %q, want %q", got, want)
	}
	if r.Faults[1].FirstAck != 1100*time.Millisecond {
		t.Errorf("kill app: FirstAck = %v, want 1.1s", r.Faults[1].FirstAck)
	}
	if r.FailedCommitted != (Counts{OK: 0, Failed: 1}) || r.FailedSignupsCommitted != 1 || r.FailedSignupsMailed != 1 {
		t.Errorf("failed but committed %+v, sign-ups committed %d mailed %d; want the timed-out sign-up, e-mailed",
			r.FailedCommitted, r.FailedSignupsCommitted, r.FailedSignupsMailed)
	}
	if r.Posts != (Counts{OK: 4, Failed: 2}) || r.Signups != (Counts{OK: 1, Failed: 1}) {
		t.Errorf("posts %+v sign-ups %+v, want {4 2} {1 1}", r.Posts, r.Signups)
	}
	if m := r.TargetMisses(); len(m) > 0 {
		t.Errorf("TargetMisses() = %q, want none", m)
	}
	table := Table([]*Result{r})
	for _, want := range []string{"| 1 | 1.50 | – | – | 1 0 | 0 | 0 | 0 / 1 | 0 (1) | 0 | yes | 3 / 0 / 0 / 0 | 1 → 1 |", "db-1: 1×503, 1×timeout", "app-1: 1×502"} {
		if !strings.Contains(table, want) {
			t.Errorf("Table() lacks %q:\n%s", want, table)
		}
	}
}

// Each way a run can go wrong shows in Problems, or in TargetMisses for
// the speed and stability targets.
func TestEvaluateCatches(t *testing.T) {
	for _, tt := range []struct {
		name   string
		spoil  func(r *Result, outs []Outcome, view *storeView, mails map[string]int, w *storewatch.Epochs) []Outcome
		ryw    RYW
		want   string // in Problems()
		target string // in TargetMisses()
	}{
		{name: "acknowledged post lost", want: "1 acknowledged posts and 0 acknowledged sign-ups lost",
			spoil: func(_ *Result, outs []Outcome, v *storeView, _ map[string]int, _ *storewatch.Epochs) []Outcome {
				delete(v.postsByID, "id4")
				delete(v.postsByTitle, "p post 4")
				return outs
			}},
		{name: "acknowledged sign-up lost", want: "0 acknowledged posts and 1 acknowledged sign-ups lost",
			spoil: func(_ *Result, outs []Outcome, v *storeView, m map[string]int, _ *storewatch.Epochs) []Outcome {
				delete(v.users, "ps1")
				delete(m, "ps1@faults.test")
				return outs
			}},
		{name: "applied twice", want: "1 posts applied twice",
			spoil: func(_ *Result, outs []Outcome, v *storeView, _ map[string]int, _ *storewatch.Epochs) []Outcome {
				v.postsByTitle["p post 4"] = 2
				return outs
			}},
		{name: "read-your-writes", ryw: RYW{Checks: 3, Violations: 1}, want: "1 read-your-writes violations",
			spoil: func(_ *Result, outs []Outcome, _ *storeView, _ map[string]int, _ *storewatch.Epochs) []Outcome {
				return outs
			}},
		{name: "401", want: "1 answers 401",
			spoil: func(_ *Result, outs []Outcome, _ *storeView, _ map[string]int, _ *storewatch.Epochs) []Outcome {
				outs[0].Status = 401
				return outs
			}},
		{name: "e-mail lost", want: "1 users without",
			spoil: func(_ *Result, outs []Outcome, _ *storeView, m map[string]int, _ *storewatch.Epochs) []Outcome {
				delete(m, "ps2@faults.test")
				return outs
			}},
		{name: "e-mail twice", want: "1 with more than one",
			spoil: func(_ *Result, outs []Outcome, _ *storeView, m map[string]int, _ *storewatch.Epochs) []Outcome {
				m["pu0@faults.test"] = 2
				return outs
			}},
		{name: "e-mail to nobody", want: "1 e-mails to nobody",
			spoil: func(_ *Result, outs []Outcome, _ *storeView, m map[string]int, _ *storewatch.Epochs) []Outcome {
				m["ghost@faults.test"] = 1
				return outs
			}},
		{name: "not converged", want: "store nodes not converged",
			spoil: func(r *Result, outs []Outcome, _ *storeView, _ map[string]int, _ *storewatch.Epochs) []Outcome {
				r.Converged = false
				return outs
			}},
		{name: "two primaries", want: "two primaries in one epoch",
			spoil: func(_ *Result, outs []Outcome, _ *storeView, _ map[string]int, w *storewatch.Epochs) []Outcome {
				w.Record("db-3", server.ReplicationStatus{Role: server.RolePrimary, Epoch: 3}, time.Now())
				return outs
			}},
		{name: "no write after the fault", want: "kill-primary of db-1: no post acknowledged after it",
			spoil: func(_ *Result, outs []Outcome, _ *storeView, _ map[string]int, _ *storewatch.Epochs) []Outcome {
				var kept []Outcome
				for _, o := range outs {
					if !(o.Op == OpPost && o.OK() && o.Store == "db-2") {
						kept = append(kept, o)
					}
				}
				return kept
			}},
		{name: "node not ready again", want: "kill-app of app-1: not ready again",
			spoil: func(r *Result, outs []Outcome, _ *storeView, _ map[string]int, _ *storewatch.Epochs) []Outcome {
				r.Events[1].Ready = time.Time{}
				return outs
			}},
		{name: "slow failover", target: "first write acknowledged after 3.5 s",
			spoil: func(_ *Result, outs []Outcome, _ *storeView, _ map[string]int, _ *storewatch.Epochs) []Outcome {
				for i := range outs {
					if outs[i].Key == "p post 4" {
						outs[i].End = outs[i].End.Add(2 * time.Second)
					}
				}
				return outs
			}},
		{name: "second failover", target: "kill-primary of db-1: 2 new epochs [3 4] (want 1)",
			spoil: func(r *Result, outs []Outcome, _ *storeView, _ map[string]int, w *storewatch.Epochs) []Outcome {
				w.Record("db-3", server.ReplicationStatus{Role: server.RoleReplica, Epoch: 4}, r.Events[0].At.Add(6*time.Second))
				return outs
			}},
		{name: "failover without a primary fault", target: "kill-app of app-1: 1 new epochs [4] (want 0)",
			spoil: func(r *Result, outs []Outcome, _ *storeView, _ map[string]int, w *storewatch.Epochs) []Outcome {
				w.Record("db-3", server.ReplicationStatus{Role: server.RoleReplica, Epoch: 4}, r.Events[1].At.Add(time.Second))
				return outs
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, outs, view, mails, watch := healthy()
			r.Converged = true
			outs = tt.spoil(r, outs, &view, mails, watch)
			ryw := tt.ryw
			if ryw.Checks == 0 {
				ryw.Checks = 1
			}
			r.evaluate(outs, ryw, view, mails, watch)
			problems, misses := strings.Join(r.Problems(), "\n"), strings.Join(r.TargetMisses(), "\n")
			if tt.want != "" && !strings.Contains(problems, tt.want) {
				t.Errorf("Problems() = %q, want one saying %q", problems, tt.want)
			}
			if tt.want == "" && problems != "" {
				t.Errorf("Problems() = %q, want none", problems)
			}
			if tt.target != "" && !strings.Contains(misses, tt.target) {
				t.Errorf("TargetMisses() = %q, want one saying %q", misses, tt.target)
			}
			if tt.target == "" && misses != "" {
				t.Errorf("TargetMisses() = %q, want none", misses)
			}
		})
	}
}

func TestParseFaults(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []Fault
		err  bool
	}{
		{in: "all", want: AllFaults},
		{in: "kill-primary, partition-primary,kill-app", want: []Fault{KillPrimary, PartitionPrimary, KillApp}},
		{in: "kill-primary,kill-primary", want: []Fault{KillPrimary, KillPrimary}},
		{in: "kill-db", err: true},
		{in: " , ", err: true},
	} {
		got, err := ParseFaults(tt.in)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("ParseFaults(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// readMail reads the worker's welcome template (pkg/worker/mail.go) as it
// is written, with CRLF line ends.
func TestReadMail(t *testing.T) {
	dir := t.TempDir()
	welcome := "From: scalestack blog <blog@example.com>\r\nTo: ab_1 <ab_1@faults.test>\r\nSubject: Welcome to the blog, ab_1\r\nDate: x\r\n\r\nHello ab_1,\r\nTo: not a header\r\n"
	comment := "From: scalestack blog <blog@example.com>\r\nTo: cd <cd@faults.test>\r\nSubject: ef commented on \"x\"\r\n\r\nbody\r\n"
	for name, body := range map[string]string{"w.eml": welcome, "c.eml": comment, "bad.eml": "Subject: Welcome\r\n\r\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if to, w, err := readMail(filepath.Join(dir, "w.eml")); to != "ab_1@faults.test" || !w || err != nil {
		t.Errorf("readMail(welcome) = %q, %v, %v; want ab_1@faults.test, true, nil", to, w, err)
	}
	if to, w, err := readMail(filepath.Join(dir, "c.eml")); to != "cd@faults.test" || w || err != nil {
		t.Errorf("readMail(comment) = %q, %v, %v; want cd@faults.test, false, nil", to, w, err)
	}
	if _, _, err := readMail(filepath.Join(dir, "bad.eml")); err == nil {
		t.Error("readMail(no To) = nil error, want one")
	}
}
