//go:build linux

// The faults of stage 10 (issue 18, item 6), on TestStage10's stack: the
// content group's primary dies under load, every search instance dies,
// payments dies in the middle of a charge. Each check is a function of
// its own, called by TestStage10 in turn, so that one stack of 26 nodes
// serves them all.

package launch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/launch"
)

// maxContentPause is issue 18's bound on content's write pause when its
// group's primary dies.
const maxContentPause = 3 * time.Second

// Test cards (docs/payments.md): the first succeeds, the second is
// charged but answers after the caller's deadline.
const (
	cardSucceeds = "4242424242424242"
	cardTimesOut = "4000000000000408"
)

// services is the stage's mix of users, content, search and payments
// requests, each a paced probe (see probe), on a few users of their own.
type services struct {
	t       testing.TB
	url     string
	writers []*blogClient // post and comment, each on a post of its own
	posts   []string      // writers[i]'s post
	reader  *blogClient   // logged in: reads its session, tips
	tipPost string        // a writer's post, which reader tips
}

// newServices signs up the users the probes act as, each with the given
// prefix, and writes the posts they comment on and tip.
func newServices(t testing.TB, url, prefix string) *services {
	t.Helper()
	m := &services{t: t, url: url}
	for i := range 3 {
		w := newBlogClient(t, url)
		w.handle = fmt.Sprintf("%s_w%d", prefix, i)
		w.signup(w.handle)
		w.c.Timeout = 5 * time.Second
		m.writers = append(m.writers, w)
		m.posts = append(m.posts, w.post(fmt.Sprintf("%s post %d to comment on", prefix, i)))
	}
	m.reader = newBlogClient(t, url)
	m.reader.handle = prefix + "_reader"
	m.reader.signup(m.reader.handle)
	m.reader.c.Timeout = 5 * time.Second
	m.tipPost = m.posts[0]
	return m
}

// contentWrites posts and comments in turn, over the writers.
func (m *services) contentWrites(ctx context.Context, wg *sync.WaitGroup, rate float64, prefix string) *probe {
	return runProbe(ctx, wg, "content writes", rate, func(i int) (string, error) {
		w := m.writers[i%len(m.writers)]
		if i%2 == 0 {
			return expect(w.do(http.MethodPost, "/api/v1/posts", map[string]any{"title": fmt.Sprintf("%s %04d", prefix, i), "body": "x", "published": true}))(http.StatusCreated)
		}
		return expect(w.do(http.MethodPost, "/api/v1/posts/"+m.posts[(i/2)%len(m.posts)]+"/comments", map[string]any{"body": fmt.Sprintf("%s comment %04d", prefix, i)}))(http.StatusCreated)
	})
}

// others runs the probes of the users, search and payments services:
// session reads, profiles, log-ins, searches and tips.
func (m *services) others(ctx context.Context, wg *sync.WaitGroup) []*probe {
	profile := m.writers[1].handle
	return []*probe{
		runProbe(ctx, wg, "users: session (GET /api/v1/me)", 5, func(int) (string, error) {
			return expect(m.reader.do(http.MethodGet, "/api/v1/me", nil))(http.StatusOK)
		}),
		runProbe(ctx, wg, "users: profile (GET /api/v1/users/{handle})", 4, func(int) (string, error) {
			return expect(m.reader.do(http.MethodGet, "/api/v1/users/"+profile, nil))(http.StatusOK)
		}),
		// Log-ins are limited to 30, then 1 every 2 s, per client address.
		runProbe(ctx, wg, "users: log-in (POST /api/v1/login)", 1, func(int) (string, error) {
			c := newBlogClient(m.t, m.url)
			c.c.Timeout = 5 * time.Second
			return expect(c.do(http.MethodPost, "/api/v1/login", map[string]string{"handle": m.reader.handle, "password": "correct horse"}))(http.StatusOK)
		}),
		runProbe(ctx, wg, "search (GET /api/v1/search)", 5, func(int) (string, error) {
			return expect(m.reader.do(http.MethodGet, "/api/v1/search?q=post", nil))(http.StatusOK)
		}),
		runProbe(ctx, wg, "payments: tip (4242)", 2, func(i int) (string, error) {
			resp, body, err := m.reader.charge("/api/v1/posts/"+m.tipPost+"/tip", fmt.Sprintf("tip-%d-%d", time.Now().UnixNano(), i), map[string]any{"amount_cents": 100, "card": card(cardSucceeds)})
			return expect(resp, body, err)(http.StatusOK)
		}),
	}
}

// card is a test card's JSON, valid for two more years.
func card(number string) map[string]any {
	return map[string]any{"number": number, "exp_month": 12, "exp_year": time.Now().Year() + 2, "cvc": "123"}
}

// charge POSTs a payment with its idempotency key.
func (b *blogClient) charge(path, key string, in any) (*http.Response, []byte, error) {
	body, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, b.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := b.c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp, buf.Bytes(), err
}

// expect turns an answer into a probe's result: who served it, and an
// error unless its status is want.
func expect(resp *http.Response, body []byte, err error) func(want int) (string, error) {
	return func(want int) (string, error) {
		if err != nil {
			return "", err
		}
		by := resp.Header.Get("X-Served-By")
		if resp.StatusCode != want {
			return by, fmt.Errorf("%s (served by %s) %.120s", resp.Status, by, bytes.TrimSpace(body))
		}
		return by, nil
	}
}

// probe sends one kind of request at a steady rate until its context
// ends, each in a goroutine of its own (open loop: a slow answer does not
// delay the next arrival), and keeps every arrival's due time, end and
// error.
type probe struct {
	name string
	mu   sync.Mutex
	arr  []arrival
	end  time.Time
}

type arrival struct {
	due, done time.Time
	err       string
}

func runProbe(ctx context.Context, wg *sync.WaitGroup, name string, rate float64, do func(i int) (servedBy string, err error)) *probe {
	p := &probe{name: name}
	wg.Add(1)
	go func() {
		defer wg.Done()
		every := time.Duration(float64(time.Second) / rate)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			var due time.Time
			select {
			case <-ctx.Done():
				p.mu.Lock()
				p.end = time.Now()
				p.mu.Unlock()
				return
			case due = <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := do(i)
				a := arrival{due: due, done: time.Now()}
				if err != nil {
					a.err = err.Error()
				}
				p.mu.Lock()
				p.arr = append(p.arr, a)
				p.mu.Unlock()
			}()
		}
	}()
	return p
}

// failures returns how many arrivals the probe sent and the errors of the
// failed ones.
func (p *probe) failures() (int, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []string
	for _, a := range p.arr {
		if a.err != "" {
			errs = append(errs, a.due.Format("15:04:05.000")+" "+a.err)
		}
	}
	return len(p.arr), errs
}

// longestPause is the longest a client had to wait for a success: over
// every arrival, from its due time to the earliest end of a successful
// arrival due no sooner. A failure, or a slow answer, lengthens it; in
// quiet times it is the latency of one request.
func (p *probe) longestPause() (pause time.Duration, at time.Time) {
	p.mu.Lock()
	arr := slices.Clone(p.arr)
	end := p.end
	p.mu.Unlock()
	slices.SortFunc(arr, func(a, b arrival) int { return a.due.Compare(b.due) })
	// next[i]: the earliest end of a success among arrivals i and later.
	next := end
	for i := len(arr) - 1; i >= 0; i-- {
		if arr[i].err == "" && arr[i].done.Before(next) {
			next = arr[i].done
		}
		if d := next.Sub(arr[i].due); d > pause {
			pause, at = d, arr[i].due
		}
	}
	return pause, at
}

// wantNoFailures fails the test for each probe that had a failed request.
func wantNoFailures(t testing.TB, when string, probes ...*probe) {
	t.Helper()
	for _, p := range probes {
		n, errs := p.failures()
		if n == 0 || len(errs) > 0 {
			t.Errorf("%s, %s: %d sent, %d failed %q; want none failed", when, p.name, n, len(errs), first(errs, 5))
		} else {
			pause, _ := p.longestPause()
			t.Logf("%s, %s: %d sent, 0 failed, longest wait for a success %s", when, p.name, n, pause.Round(time.Millisecond))
		}
	}
}

// contentPrimaryKilled kills the content group's primary under load:
// content's writes pause less than maxContentPause, users, search and
// payments serve every request, node up and ps show the failover, and the
// old primary comes back as a replica of the new one.
func contentPrimaryKilled(t *testing.T, s *stack) {
	s = s.in(t)
	url := s.state().URL
	m := newServices(t, url, "s10f")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	writes := m.contentWrites(ctx, &wg, 8, "During the failover")
	others := m.others(ctx, &wg)
	time.Sleep(2 * time.Second) // a steady state before the kill
	killed := time.Now()
	s.run("kill", "content-db-1")
	line := regexp.MustCompile(`content group: (content-db-\d) is the primary at epoch (\d+), ([\d.]+)s after content-db-1 was last seen as primary`)
	var got []string
	testwait.RetryUntil(t, 15*time.Second, func() error {
		if got = line.FindStringSubmatch(s.out.String()); got == nil {
			return fmt.Errorf("node up printed no new primary of content")
		}
		return nil
	})
	t.Logf("node up: %s (seen %s after the kill)", got[0], time.Since(killed).Round(10*time.Millisecond))
	time.Sleep(3 * time.Second) // the load goes on after the failover
	cancel()
	wg.Wait()

	pause, at := writes.longestPause()
	n, errs := writes.failures()
	t.Logf("content writes across the failover: %d sent, %d failed, longest wait for a write %s (from an arrival due %s after the kill)",
		n, len(errs), pause.Round(time.Millisecond), at.Sub(killed).Round(time.Millisecond))
	for _, e := range first(errs, 5) {
		t.Logf("  failed write: %s", e)
	}
	if pause >= maxContentPause {
		t.Errorf("content writes paused %s when content-db-1 died, want under %s", pause.Round(time.Millisecond), maxContentPause)
	}
	wantNoFailures(t, "across content's failover", others...)

	// Shown: events.jsonl has the failover, ps names the new primary and
	// the others follow it.
	primary, epoch := got[1], got[2]
	events, err := launch.ReadEvents(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events, func(e launch.Event) bool {
		return e.Kind == launch.EventPrimary && e.Group == "content" && e.Node == primary && fmt.Sprint(e.Epoch) == epoch && e.Previous == "content-db-1"
	}) {
		t.Errorf("%s has no primary event of the content group for %s at epoch %s after content-db-1", launch.EventsFile, primary, epoch)
	}
	wantGroupRoles(t, s, "content", map[string]string{"content-db-1": "", primary: "primary of content (epoch " + epoch + ")"}, "replica of "+primary+" in content (epoch "+epoch+")")

	// Back: content-db-1 rejoins as a replica of the new primary.
	s.run("start", "content-db-1")
	s.wantState("content-db-1", launch.StateRunning)
	wantGroupRoles(t, s, "content", map[string]string{primary: "primary of content (epoch " + epoch + ")"}, "replica of "+primary+" in content (epoch "+epoch+")")
	m.writers[0].wantTitle(m.posts[0], "s10f post 0 to comment on")
}

// wantGroupRoles waits until ps shows each store node of group with the
// role of want, or other when want does not name it ("" for a dead node).
func wantGroupRoles(t testing.TB, s *stack, group string, want map[string]string, other string) {
	t.Helper()
	testwait.RetryUntil(t, 15*time.Second, func() error {
		procs, _, _, err := launch.PS(s.dir)
		if err != nil {
			return err
		}
		for _, p := range procs {
			if !strings.HasPrefix(p.Name, group+"-db-") {
				continue
			}
			var got string
			if p.Store != nil {
				got = p.Store.Describe(p.Name)
			}
			w, ok := want[p.Name]
			if !ok {
				w = other
			}
			if got != w {
				return fmt.Errorf("ps: %s is %q, want %q", p.Name, got, w)
			}
		}
		return nil
	})
	t.Logf("ps: %s", strings.Join(groupLines(s.run("ps"), group), "; "))
}

// groupLines returns ps's lines that name a node of group's store.
func groupLines(ps, group string) []string {
	var out []string
	for _, l := range strings.Split(ps, "\n") {
		if strings.Contains(l, group+"-db-") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return out
}

// searchKilled kills every search instance: pages still render, the
// search page says search is unavailable and its API answers 503, the other
// services serve every request; a post written meanwhile is found once
// search is back (its post.changed event waited in NATS).
func searchKilled(t *testing.T, s *stack) {
	s = s.in(t)
	url := s.state().URL
	var instances []string
	for _, n := range s.state().Nodes {
		if regexp.MustCompile(`^search-\d+$`).MatchString(n.Name) {
			instances = append(instances, n.Name)
		}
	}
	for _, name := range instances {
		s.run("kill", name)
	}
	for _, name := range instances {
		s.wantState(name, launch.StateDead)
	}
	t.Logf("killed every search instance: %s", strings.Join(instances, " "))

	m := newServices(t, url, "s10s")
	word := letters(time.Now().UnixNano())
	id := m.writers[0].post("Written while search was down " + word)
	anon := newBlogClient(t, url)
	for _, c := range []struct {
		who    *blogClient
		path   string
		status int
		has    string
	}{
		{anon, "/", 200, ""},
		{m.writers[0], "/", 200, ""},
		{anon, "/p/" + id, 200, word},
		{anon, "/search?q=" + word, 200, "Search is unavailable"},
		{m.writers[0], "/search?q=" + word, 200, "Search is unavailable"},
		{anon, "/api/v1/search?q=" + word, 503, ""},
	} {
		resp, body, err := c.who.fetch(c.path, 5*time.Second)
		if err != nil || resp.StatusCode != c.status || !bytes.Contains(body, []byte(c.has)) {
			t.Errorf("GET %s with search down: %s %v, want %d with %q:\n%.300s", c.path, status(resp), err, c.status, c.has, body)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	probes := []*probe{m.contentWrites(ctx, &wg, 4, "While search was down")}
	for _, p := range m.others(ctx, &wg) {
		if !strings.HasPrefix(p.name, "search") {
			probes = append(probes, p)
		}
	}
	time.Sleep(3 * time.Second)
	cancel()
	wg.Wait()
	wantNoFailures(t, "with search down", probes...)

	for _, name := range instances {
		s.run("start", name)
	}
	started := time.Now()
	testwait.RetryUntil(t, 30*time.Second, func() error {
		resp, body, err := anon.fetch("/api/v1/search?q="+word, 2*time.Second)
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(id)) {
			return fmt.Errorf("search for the post written while search was down: %s %v %.200s", status(resp), err, body)
		}
		return nil
	})
	t.Logf("search back: the post written while it was down is found %s after the start", time.Since(started).Round(10*time.Millisecond))
}

// letters spells n in lower-case letters: a word no tokenizer splits.
func letters(n int64) string {
	return strings.Map(func(r rune) rune { return 'a' + (r - '0') }, strconv.FormatInt(n, 10))
}

// paymentsKilledMidCharge buys the supporter badge with the card that
// keeps the charge in flight, kills payments-1 during it, starts it again
// and retries with the same key until it answers: one payment, one badge.
func paymentsKilledMidCharge(t *testing.T, s *stack) {
	s = s.in(t)
	url := s.state().URL
	b := newBlogClient(t, url)
	b.handle = "s10p_buyer"
	b.signup(b.handle)
	b.c.Timeout = 30 * time.Second
	key := "badge-" + letters(time.Now().UnixNano())
	in := map[string]any{"card": card(cardTimesOut)}

	type answer struct {
		resp *http.Response
		body []byte
		err  error
		at   time.Time
	}
	firstCall := make(chan answer, 1)
	sent := time.Now()
	go func() {
		resp, body, err := b.charge("/api/v1/me/supporter-badge", key, in)
		firstCall <- answer{resp, body, err, time.Now()}
	}()
	time.Sleep(time.Second) // the payment is recorded, its charge in flight
	select {
	case a := <-firstCall:
		t.Fatalf("the timeout card's charge answered before the kill, after %s: %s %v %s", a.at.Sub(sent), status(a.resp), a.err, a.body)
	default:
	}
	s.run("kill", "payments-1")
	a := <-firstCall
	t.Logf("the call in flight when payments-1 died: %s %v %.200s (after %s)", status(a.resp), a.err, bytes.TrimSpace(a.body), a.at.Sub(sent).Round(time.Millisecond))
	if a.err == nil && a.resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("the call in flight when payments-1 died: %s, want 503 (retry with the same key)", status(a.resp))
	}
	s.wantState("payments-1", launch.StateDead)
	s.run("start", "payments-1")
	s.wantState("payments-1", launch.StateRunning)

	// Retry with the same key until the payment is settled.
	var pay struct {
		Payment struct {
			ID      string `json:"id"`
			Kind    string `json:"kind"`
			Status  string `json:"status"`
			EventID string `json:"event_id"`
			Amount  int64  `json:"amount"`
		}
	}
	var tries []string
	restarted := time.Now()
	testwait.RetryUntil(t, 60*time.Second, func() error {
		resp, body, err := b.charge("/api/v1/me/supporter-badge", key, in)
		tries = append(tries, fmt.Sprintf("%s %v", status(resp), err))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("retry with the same key: %s %s, want 200 or 503 (retry)", status(resp), body)
			}
			return fmt.Errorf("retry with the same key: %s %s", status(resp), body)
		}
		return json.Unmarshal(body, &pay)
	})
	t.Logf("retries with the same key after the restart (%s): %s", time.Since(restarted).Round(time.Millisecond), strings.Join(tries, "; "))
	p := pay.Payment
	if p.ID == "" || p.Kind != "badge" || p.Status != "succeeded" || p.Amount != 500 || p.EventID == "" {
		t.Fatalf("the settled badge payment: %+v, want a succeeded badge of 500 with its event", p)
	}

	// Once more with the key: the same payment. A new key: refused, the
	// badge is bought.
	resp, body, err := b.charge("/api/v1/me/supporter-badge", key, in)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"id":"`+p.ID+`"`)) {
		t.Errorf("another retry with the key: %s %v %s, want 200 with payment %s", status(resp), err, body, p.ID)
	}
	resp, body, err = b.charge("/api/v1/me/supporter-badge", key+"-2", map[string]any{"card": card(cardSucceeds)})
	if err != nil || resp.StatusCode != http.StatusConflict || !bytes.Contains(body, []byte(`"exists"`)) {
		t.Errorf("the badge again with a new key: %s %v %s, want 409 exists", status(resp), err, body)
	}

	// One payment.
	_, body, err = b.fetch("/api/v1/me/payments", 5*time.Second)
	var list struct {
		Payments []struct{ ID, Kind, Status string }
	}
	if err != nil || json.Unmarshal(body, &list) != nil {
		t.Fatalf("GET /api/v1/me/payments: %v %s", err, body)
	}
	if len(list.Payments) != 1 || list.Payments[0].ID != p.ID || list.Payments[0].Status != "succeeded" {
		t.Errorf("GET /api/v1/me/payments = %s, want the one payment %s, succeeded", bytes.TrimSpace(body), p.ID)
	}

	// One badge: the users service holds it, granted by the payment's
	// event, and the profile shows it once.
	_, body, err = b.fetch("/api/v1/me", 5*time.Second)
	var me struct{ User struct{ ID string } }
	if err != nil || json.Unmarshal(body, &me) != nil || me.User.ID == "" {
		t.Fatalf("GET /api/v1/me: %v %s", err, body)
	}
	users := s.node("users-1").URL("service")
	testwait.RetryUntil(t, 15*time.Second, func() error {
		resp, err := http.Post(users+"/v1/users/badge", "application/json", strings.NewReader(`{"user_id":"`+me.User.ID+`"}`))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var badge struct {
			UserID    string `json:"user_id"`
			PaymentID string `json:"payment_id"`
			EventID   string `json:"event_id"`
		}
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(buf.Bytes(), &badge) != nil {
			return fmt.Errorf("users-1 badge of %s: %s %s", me.User.ID, resp.Status, buf.Bytes())
		}
		if badge.PaymentID != p.ID || badge.EventID != p.EventID {
			t.Fatalf("users-1 badge of %s: %s, want payment %s and its event %s", me.User.ID, buf.Bytes(), p.ID, p.EventID)
		}
		return nil
	})
	testwait.RetryUntil(t, 10*time.Second, func() error {
		_, body, err := b.fetch("/u/"+b.handle, 5*time.Second)
		if n := bytes.Count(body, []byte(`id="supporter"`)); err != nil || n != 1 {
			return fmt.Errorf("the profile of %s shows the supporter badge %d times (%v), want once", b.handle, n, err)
		}
		return nil
	})
	t.Logf("payment %s: one payment, one badge (granted by event %s)", p.ID, p.EventID)
}

// in returns s with its failures reported to t, a subtest's.
func (s *stack) in(t testing.TB) *stack {
	c := *s
	c.t = t
	return &c
}
