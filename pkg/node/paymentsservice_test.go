package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/internal/testcluster"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/node"
	"github.com/scalestack/scalestack/pkg/store"
)

// Payments as a service node (issue 18, item 1's first slice): a store
// primary of the default group and one of the payments group (their two
// NATS servers make JetStream's cluster; a clustered server alone waits
// for a second), a payments service node, and an app at --jobs=queue, which owns
// accounts and consumes badge.granted. Over the wire: a tip sent twice with
// one Idempotency-Key is one payment; the decline cards answer 402 and
// errors.Is holds in the caller; a key reused for another amount is 409;
// a badge bought on the payments node is granted once by the app's
// subscriber.
func TestPaymentsServiceNode(t *testing.T) {
	tc := testcluster.New(t)
	tc.Start("db", node.RolePrimary)
	tc.StartWith("pay-db", []string{node.RolePrimary}, func(c *node.Config) {
		c.RoleConfig.Store.Group = "payments"
	})
	pay := tc.StartWith("pay-1", []string{node.RoleService}, func(c *node.Config) { c.Service = payments.Name })
	tc.StartWith("app-1", []string{node.RoleApp}, func(c *node.Config) {
		c.RoleConfig.App.Jobs = app.JobsQueue
		c.RoleConfig.App.BcryptCost = bcrypt.MinCost
	})

	// Membership names the service and its port.
	m := memberOf(t, tc.Node("app-1"), "pay-1")
	addr := pay.Addr("service")
	if m.Service != payments.Name || m.RoleAddr("service") != addr || addr == "" {
		t.Fatalf("app-1 sees pay-1 as service %q at %q, want %q at %q", m.Service, m.RoleAddr("service"), payments.Name, addr)
	}

	// Two users in the default group, where accounts live.
	ctx := context.Background()
	users := store.NewClient(store.ClientConfig{Resolver: tc.Node("db"), Timeout: 10 * time.Second})
	t.Cleanup(func() { users.Close() })
	acc := accounts.New(users, bcrypt.MinCost)
	reader, err := acc.SignUp(ctx, "reader", "reader@example.com", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	author, err := acc.SignUp(ctx, "author", "author@example.com", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}

	client, err := rpc.New(rpc.Config{
		Service:   payments.Name,
		Instances: func() []rpc.Instance { return []rpc.Instance{{Name: "pay-1", Addr: addr}} },
		Codes:     payments.Codes,
		Timeout:   20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	card := func(number string) payments.Card {
		return payments.Card{Number: number, ExpMonth: 12, ExpYear: time.Now().Year() + 2, CVC: "123"}
	}

	// A tip POSTed twice with one Idempotency-Key: one payment, one answer.
	tip := payments.TipRequest{FromUserID: reader.ID, ToAuthorID: author.ID, Amount: 300, Card: card(payments.CardVisa)}
	var first payments.Payment
	for i := range 2 {
		status, body := post(t, addr, payments.TipMethod.Name, "tip-1", tip)
		if status != http.StatusOK {
			t.Fatalf("tip #%d: %d %s, want 200", i+1, status, body)
		}
		var p payments.Payment
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if p.Status != payments.StatusSucceeded || (i == 1 && p.ID != first.ID) {
			t.Fatalf("tip #%d = %+v, want succeeded with the id of the first (%s)", i+1, p, first.ID)
		}
		first = p
	}
	totals, err := rpc.Call(ctx, client, payments.TipsForMethod, payments.TipsForRequest{AuthorID: author.ID})
	if err != nil || totals.Count != 1 || totals.Amount != 300 {
		t.Fatalf("tips for the author = %+v, %v; want one tip of 300", totals, err)
	}

	// The same key with another amount: key_reused, 409, a conflict.
	tip.Amount, tip.Key = 400, "tip-1"
	if _, err := rpc.Call(ctx, client, payments.TipMethod, tip); !errors.Is(err, payments.ErrKeyReused) || !errors.Is(err, svc.ErrConflict) {
		t.Fatalf("tip with a reused key = %v, want ErrKeyReused and svc.ErrConflict", err)
	}

	// The decline cards: 402 on the wire, their errors in the caller.
	tip.Key, tip.Card = "tip-2", card(payments.CardDeclined)
	if _, err := rpc.Call(ctx, client, payments.TipMethod, tip); !errors.Is(err, payments.ErrDeclined) || errors.Is(err, payments.ErrInsufficientFunds) {
		t.Fatalf("tip with the declined card = %v, want ErrDeclined (not insufficient funds)", err)
	}
	tip.Key, tip.Card = "tip-3", card(payments.CardInsufficientFunds)
	if _, err := rpc.Call(ctx, client, payments.TipMethod, tip); !errors.Is(err, payments.ErrInsufficientFunds) || !errors.Is(err, payments.ErrDeclined) {
		t.Fatalf("tip with the insufficient funds card = %v, want ErrInsufficientFunds, a decline", err)
	}
	tip.Key, tip.Card = "", card(payments.CardDeclined) // the key in the header alone
	status, body := post(t, addr, payments.TipMethod.Name, "tip-2", tip)
	var we rpc.WireError
	if err := json.Unmarshal(body, &we); err != nil || status != http.StatusPaymentRequired || we.Code != "declined" {
		t.Fatalf("the declined tip again over HTTP = %d %s, want 402 code declined", status, body)
	}

	// The badge: bought on the payments node (twice, one key), granted
	// once by the app's subscriber in the default group.
	buy := payments.BadgeRequest{Key: "badge-1", UserID: reader.ID, Card: card(payments.CardMastercard)}
	p1, err := rpc.Call(ctx, client, payments.BadgeMethod, buy)
	if err != nil {
		t.Fatalf("buy badge: %v", err)
	}
	p2, err := rpc.Call(ctx, client, payments.BadgeMethod, buy)
	if err != nil || p2.ID != p1.ID || p1.EventID == "" {
		t.Fatalf("buy badge again = %+v, %v; want the first payment %s, with its event", p2, err, p1.ID)
	}
	testwait.RetryUntil(t, 30*time.Second, func() error {
		b, err := acc.Badge(ctx, reader.ID)
		if err != nil {
			return fmt.Errorf("badge of the reader: %w", err)
		}
		if b.PaymentID != p1.ID {
			return fmt.Errorf("badge %+v, want payment %s", b, p1.ID)
		}
		return nil
	})
	applied, err := users.Scan(store.WithConsistency(ctx, store.Strong, 0), "accounts.events", store.ScanOptions{})
	if err != nil || len(applied) != 1 || applied[0].Key != p1.EventID {
		t.Fatalf("applied events = %v, %v; want the one event %s", applied, err, p1.EventID)
	}
	// Every payment of the reader is listed, and the outbox, in the
	// payments group, is empty once JetStream has the event.
	list, err := rpc.Call(ctx, client, payments.ForUserMethod, payments.ForUserRequest{UserID: reader.ID})
	if err != nil || len(list.Payments) != 4 { // badge-1, tip-3, tip-2, tip-1
		t.Fatalf("payments of the reader = %+v, %v; want 4", list, err)
	}
	// /status shows the service and its publisher, which published the
	// badge's event; the app's subscriber handled it once. (The counters
	// move just after the publish and the ack: waited for.)
	testwait.RetryUntil(t, 10*time.Second, func() error {
		st, err := json.Marshal(pay.Status().Sections)
		if err != nil {
			return err
		}
		for _, want := range []string{`"service":"payments"`, `"group":"payments"`, `"store_primary":true`, `"published":1`} {
			if !strings.Contains(string(st), want) {
				return fmt.Errorf("pay-1 /status sections lack %s: %s", want, st)
			}
		}
		st, _ = json.Marshal(tc.Node("app-1").Status().Sections["events"])
		if !strings.Contains(string(st), `"handled":1`) {
			return fmt.Errorf("app-1 /status events = %s, want the badge event handled once", st)
		}
		return nil
	})
	payStore := store.NewClient(store.ClientConfig{Resolver: tc.Node("db"), Group: "payments", Timeout: 10 * time.Second})
	t.Cleanup(func() { payStore.Close() })
	testwait.RetryUntil(t, 10*time.Second, func() error {
		left, err := payStore.Scan(store.WithConsistency(ctx, store.Strong, 0), "payments.outbox", store.ScanOptions{})
		if err != nil || len(left) != 0 {
			return fmt.Errorf("payments outbox holds %d events (%v), want none", len(left), err)
		}
		return nil
	})
}

// post sends a call by hand, as curl would, with an Idempotency-Key.
func post(t *testing.T, addr, method, key string, req any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	hr, err := http.NewRequest(http.MethodPost, "http://"+addr+rpc.Path(payments.Name, method), bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(rpc.HeaderIdempotencyKey, key)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// --roles service wants --service, refuses an unknown service by name,
// and --service without the role.
func TestServiceFlags(t *testing.T) {
	for _, tt := range []struct {
		roles   []string
		service string
		group   string
		want    string
	}{
		{[]string{node.RoleService}, "", "", "--service"},
		{[]string{node.RoleService}, "billing", "", "unknown service"},
		{[]string{node.RoleApp}, "payments", "", "use it with --roles service"},
		{[]string{node.RoleService}, "payments", "Bad_Group", "--group"},
	} {
		cfg := node.DefaultConfig()
		cfg.RoleNames, cfg.Service, cfg.RoleConfig.Store.Group = tt.roles, tt.service, tt.group
		cfg.DataDir = t.TempDir()
		_, err := node.New(cfg)
		if !errors.Is(err, node.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("roles %v --service %q --group %q: %v, want a configuration error saying %q", tt.roles, tt.service, tt.group, err, tt.want)
		}
	}
	cfg := node.DefaultConfig()
	cfg.RoleNames, cfg.Service, cfg.DataDir = []string{node.RoleService}, "payments", t.TempDir()
	if _, err := node.New(cfg); err != nil {
		t.Errorf("--roles service --service payments: %v", err)
	}
}

// With a cluster key, the service port wants the service token derived
// from it (cluster.PurposeService), and no other door's.
func TestServiceTokenWithKey(t *testing.T) {
	key, err := cluster.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := cluster.ParseKey(key)
	tc := testcluster.New(t)
	tc.StartWith("pay-db", []string{node.RolePrimary}, func(c *node.Config) {
		c.ClusterKey, c.NATS, c.RoleConfig.Store.Group = key, node.NATSOff, "payments"
	})
	pay := tc.StartWith("pay-1", []string{node.RoleService}, func(c *node.Config) { c.ClusterKey, c.Service = key, payments.Name })
	url := "http://" + pay.Addr("service") + rpc.Path(payments.Name, payments.TipsForMethod.Name)
	call := func(authz string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"author_id":"1m9970000000b"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, authz := range []string{"", "Bearer " + cluster.DeriveSecret(raw, cluster.PurposeStore)} {
		if code, body := call(authz); code != http.StatusUnauthorized || !strings.Contains(body, `"unauthorized"`) {
			t.Errorf("tips-for with Authorization %.20q = %d %s, want 401 unauthorized", authz, code, body)
		}
	}
	if code, body := call("Bearer " + cluster.DeriveSecret(raw, cluster.PurposeService)); code != http.StatusOK || !strings.Contains(body, `"count":0`) {
		t.Errorf("tips-for with the service token = %d %s, want 200 with no tips", code, body)
	}
}
