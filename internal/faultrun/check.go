package faultrun

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/scalestack/scalestack/internal/poll"
	"github.com/scalestack/scalestack/internal/storewatch"
	"github.com/scalestack/scalestack/pkg/store"
)

// The blog's buckets the checks read (pkg/app/posts, pkg/app/accounts).
// They are read straight from the store, not through the blog: the
// question is what the store holds, whatever the app would show.
const (
	bucketPosts = "posts.byid"     // post id -> post record
	bucketUsers = "accounts.users" // user id -> user record
)

// storeView is what the store holds of the run at the end.
type storeView struct {
	postsByID    map[string]string // post id -> title
	postsByTitle map[string]int    // title -> how many posts have it
	users        map[string]string // handle -> e-mail address
}

// readStore scans the posts and users with strong reads (the primary),
// retrying while the store cannot answer, until timeout.
func readStore(ctx context.Context, c *Cluster, prefix string, timeout time.Duration) (storeView, error) {
	var res store.StaticResolver
	for _, n := range c.StoreNodes() {
		res = append(res, store.NodeInfo{Name: n.Name, Addr: n.Store()})
	}
	client := store.NewClient(store.ClientConfig{Resolver: res, Timeout: 5 * time.Second, Token: c.storeToken})
	defer client.Close()
	ctx = store.WithConsistency(ctx, store.Strong, 0)
	v := storeView{postsByID: map[string]string{}, postsByTitle: map[string]int{}, users: map[string]string{}}
	err := poll.Until(ctx, timeout, pollEvery, func() error {
		clear(v.postsByID)
		clear(v.postsByTitle)
		clear(v.users)
		if err := scanAll(ctx, client, bucketPosts, func(key string, val []byte) error {
			var p struct {
				ID, Title string
			}
			if err := json.Unmarshal(val, &p); err != nil {
				return fmt.Errorf("post %s: %w", key, err)
			}
			if strings.HasPrefix(p.Title, prefix+" ") {
				v.postsByID[key] = p.Title
				v.postsByTitle[p.Title]++
			}
			return nil
		}); err != nil {
			return err
		}
		return scanAll(ctx, client, bucketUsers, func(key string, val []byte) error {
			var u struct {
				Handle, Email string
			}
			if err := json.Unmarshal(val, &u); err != nil {
				return fmt.Errorf("user %s: %w", key, err)
			}
			if strings.HasPrefix(u.Handle, prefix) {
				v.users[u.Handle] = u.Email
			}
			return nil
		})
	})
	return v, err
}

func scanAll(ctx context.Context, c *store.Client, bucket string, fn func(key string, val []byte) error) error {
	const page = 1000
	for start := ""; ; {
		pairs, err := c.Scan(ctx, bucket, store.ScanOptions{Start: start, Limit: page})
		if err != nil {
			return err
		}
		for _, p := range pairs {
			if err := fn(p.Key, p.Value); err != nil {
				return err
			}
		}
		if len(pairs) < page {
			return nil
		}
		start = pairs[len(pairs)-1].Key + "\x00"
	}
}

// convergence waits until the three store nodes have the same checksum at
// the same LSN, and describes the last answers either way.
func convergence(ctx context.Context, c *Cluster, timeout time.Duration) (bool, string) {
	var desc string
	err := poll.Until(ctx, timeout, pollEvery, func() error {
		var sums []string
		same := true
		var first string
		for i, n := range c.StoreNodes() {
			sum, lsn, err := storewatch.Checksum(ctx, n.watched())
			if err != nil {
				desc = fmt.Sprintf("%s: %v", n.Name, err)
				return err
			}
			s := fmt.Sprintf("%08x@%d", sum, lsn)
			if i == 0 {
				first = s
			} else if s != first {
				same = false
			}
			sums = append(sums, n.Name+" "+s)
		}
		desc = strings.Join(sums, ", ")
		if !same {
			return fmt.Errorf("checksums differ: %s", desc)
		}
		return nil
	})
	return err == nil, desc
}

// welcomeMails counts the welcome e-mails in every node's outbox folder
// (DATA/outbox: the worker's, and the apps' in case one sent e-mail
// inline), by recipient address.
func welcomeMails(c *Cluster) (map[string]int, error) {
	out := map[string]int{}
	for _, n := range c.nodes {
		files, err := filepath.Glob(filepath.Join(n.Data(), "outbox", "*.eml"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			to, welcome, err := readMail(f)
			if err != nil {
				return nil, err
			}
			if welcome {
				out[to]++
			}
		}
	}
	return out, nil
}

// readMail returns the address of an e-mail's To header and whether it is
// a welcome e-mail (pkg/worker's template).
func readMail(path string) (to string, welcome bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			break // end of the headers
		}
		if v, ok := strings.CutPrefix(line, "To: "); ok {
			a, err := mail.ParseAddress(v)
			if err != nil {
				return "", false, fmt.Errorf("%s: To %q: %w", path, v, err)
			}
			to = a.Address
		}
		if strings.HasPrefix(line, "Subject: Welcome") {
			welcome = true
		}
	}
	if to == "" {
		return "", false, fmt.Errorf("%s: no To header", path)
	}
	return to, welcome, sc.Err()
}
