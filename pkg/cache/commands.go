package cache

import (
	"crypto/subtle"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/scalestack/scalestack/pkg/cache/lru"
	"github.com/scalestack/scalestack/pkg/cache/resp"
)

// Error replies, worded as Redis words them, since clients and people
// match on them.
const (
	errSyntax     = "ERR syntax error"
	errNotInt     = "ERR value is not an integer or out of range"
	errOverflow   = "ERR increment or decrement would overflow"
	errOOM        = "OOM command not allowed when used memory > 'maxmemory'."
	errNoAuth     = "NOAUTH Authentication required."
	errWrongPass  = "WRONGPASS invalid username-password pair or user is disabled."
	errNoPassword = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errDBIndex    = "ERR DB index is out of range"
	errNoProto    = "NOPROTO unsupported protocol version"
	errClientName = "ERR Client names cannot contain spaces, newlines or special characters."
)

func errArity(name string) string {
	return "ERR wrong number of arguments for '" + name + "' command"
}

func errExpire(name string) string {
	return "ERR invalid expire time in '" + name + "' command"
}

// execute runs one request and appends its reply to c.out.
func (c *conn) execute(args [][]byte) {
	id := lookupCommand(args[0])
	if id == cmdUnknown {
		c.out = resp.AppendError(c.out, unknownCommand(args))
		return
	}
	spec := &commandTable[id]
	if !c.authed && !spec.noAuth {
		c.out = resp.AppendError(c.out, errNoAuth)
		return
	}
	if (spec.arity > 0 && len(args) != spec.arity) || (spec.arity < 0 && len(args) < -spec.arity) {
		c.out = resp.AppendError(c.out, errArity(spec.name))
		return
	}
	commandRun[id](c, args)
}

// commandRun is each command's handler, called with arguments whose number
// execute has checked against commandTable's arity. It is apart from
// commandTable because COMMAND's handler reads that table, and Go refuses
// a table that refers to itself through its handlers.
var commandRun = [numCommands]func(c *conn, args [][]byte){
	cmdAuth:     (*conn).auth,
	cmdClient:   (*conn).client,
	cmdCommand:  (*conn).command,
	cmdConfig:   (*conn).config,
	cmdDBSize:   (*conn).dbsize,
	cmdDecr:     func(c *conn, args [][]byte) { c.incrBy(args[1], -1) },
	cmdDecrBy:   func(c *conn, args [][]byte) { c.incrByArg(args, true) },
	cmdDel:      (*conn).del,
	cmdEcho:     func(c *conn, args [][]byte) { c.out = resp.AppendBulk(c.out, args[1]) },
	cmdExists:   (*conn).exists,
	cmdExpire:   func(c *conn, args [][]byte) { c.expire(args, "expire", false) },
	cmdFlushAll: (*conn).flushAll,
	cmdFlushDB:  (*conn).flushAll,
	cmdGet:      func(c *conn, args [][]byte) { c.get(args[1]) },
	cmdGetDel:   (*conn).getdel,
	cmdGetEx:    (*conn).getex,
	cmdHello:    (*conn).hello,
	cmdIncr:     func(c *conn, args [][]byte) { c.incrBy(args[1], 1) },
	cmdIncrBy:   func(c *conn, args [][]byte) { c.incrByArg(args, false) },
	cmdInfo:     func(c *conn, args [][]byte) { c.out = resp.AppendBulkString(c.out, c.s.info(args[1:])) },
	cmdMGet:     (*conn).mget,
	cmdMSet:     (*conn).mset,
	cmdPExpire:  func(c *conn, args [][]byte) { c.expire(args, "pexpire", true) },
	cmdPSetEX:   func(c *conn, args [][]byte) { c.setWithTTL(args, time.Millisecond, "psetex") },
	cmdPTTL:     func(c *conn, args [][]byte) { c.ttl(args[1], time.Millisecond) },
	cmdPersist:  (*conn).persist,
	cmdPing:     (*conn).ping,
	cmdQuit:     (*conn).quitCmd,
	cmdSelect:   (*conn).selectDB,
	cmdSet:      (*conn).set,
	cmdSetEX:    func(c *conn, args [][]byte) { c.setWithTTL(args, time.Second, "setex") },
	cmdSetNX:    func(c *conn, args [][]byte) { c.setOpts(args[1], args[2], setOptions{nx: true}, true) },
	cmdStrlen:   (*conn).strlen,
	cmdTTL:      func(c *conn, args [][]byte) { c.ttl(args[1], time.Second) },
	cmdTime:     (*conn).serverTime,
	cmdType:     (*conn).keyType,
	cmdUnlink:   (*conn).del,
}

func (c *conn) ping(args [][]byte) {
	switch len(args) {
	case 1:
		c.out = append(c.out, "+PONG\r\n"...)
	case 2:
		c.out = resp.AppendBulk(c.out, args[1])
	default:
		c.out = resp.AppendError(c.out, errArity("ping"))
	}
}

func (c *conn) mget(args [][]byte) {
	c.out = resp.AppendArray(c.out, len(args)-1)
	for _, k := range args[1:] {
		c.get(k)
	}
}

// del is DEL and UNLINK: a value is freed as it is deleted either way.
func (c *conn) del(args [][]byte) {
	n := 0
	for _, k := range args[1:] {
		sh := c.s.store.shard(k)
		sh.mu.Lock()
		if sh.lru.Delete(view(k), c.now) {
			n++
		}
		sh.mu.Unlock()
	}
	c.out = resp.AppendInt(c.out, int64(n))
}

func (c *conn) exists(args [][]byte) {
	n := 0
	for _, k := range args[1:] {
		sh := c.s.store.shard(k)
		sh.mu.Lock()
		if _, ok := sh.lru.Peek(view(k), c.now); ok {
			n++
		}
		sh.mu.Unlock()
	}
	c.out = resp.AppendInt(c.out, int64(n))
}

func (c *conn) getdel(args [][]byte) {
	sh := c.s.store.shard(args[1])
	sh.mu.Lock()
	v, ok := sh.lru.Get(view(args[1]), c.now)
	if ok {
		sh.lru.Delete(view(args[1]), c.now)
	}
	sh.mu.Unlock()
	c.appendValue(v, ok)
}

// setWithTTL is SETEX and PSETEX: key, time to live in unit, value.
func (c *conn) setWithTTL(args [][]byte, unit time.Duration, name string) {
	d, errMsg := c.deadlineIn(args[2], unit, name)
	if errMsg != "" {
		c.out = resp.AppendError(c.out, errMsg)
		return
	}
	c.setOpts(args[1], args[3], setOptions{deadline: d}, false)
}

func (c *conn) persist(args [][]byte) {
	sh := c.s.store.shard(args[1])
	sh.mu.Lock()
	d, ok := sh.lru.Deadline(view(args[1]), c.now)
	if ok && d != 0 {
		sh.lru.SetDeadline(view(args[1]), 0, c.now)
	}
	sh.mu.Unlock()
	c.out = resp.AppendInt(c.out, b2i(ok && d != 0))
}

// ttl is TTL and PTTL: the time to live in unit, rounded; -2 for no key,
// -1 for a key without one.
func (c *conn) ttl(key []byte, unit time.Duration) {
	sh := c.s.store.shard(key)
	sh.mu.Lock()
	d, ok := sh.lru.Deadline(view(key), c.now)
	sh.mu.Unlock()
	switch {
	case !ok:
		c.out = resp.AppendInt(c.out, -2)
	case d == 0:
		c.out = resp.AppendInt(c.out, -1)
	default:
		c.out = resp.AppendInt(c.out, (d-c.now+int64(unit)/2)/int64(unit))
	}
}

// incrByArg is INCRBY and DECRBY.
func (c *conn) incrByArg(args [][]byte, decr bool) {
	n, ok := parseInt(args[2])
	if !ok || (decr && n == math.MinInt64) {
		c.out = resp.AppendError(c.out, errNotInt)
		return
	}
	if decr {
		n = -n
	}
	c.incrBy(args[1], n)
}

func (c *conn) strlen(args [][]byte) {
	sh := c.s.store.shard(args[1])
	sh.mu.Lock()
	v, _ := sh.lru.Peek(view(args[1]), c.now)
	sh.mu.Unlock()
	c.out = resp.AppendInt(c.out, int64(len(v)))
}

func (c *conn) keyType(args [][]byte) {
	sh := c.s.store.shard(args[1])
	sh.mu.Lock()
	_, ok := sh.lru.Peek(view(args[1]), c.now)
	sh.mu.Unlock()
	if ok {
		c.out = append(c.out, "+string\r\n"...)
	} else {
		c.out = append(c.out, "+none\r\n"...)
	}
}

func (c *conn) dbsize([][]byte) {
	c.out = resp.AppendInt(c.out, int64(c.s.store.totals().keys))
}

// flushAll is FLUSHALL and FLUSHDB, with an optional ASYNC or SYNC that
// changes nothing here.
func (c *conn) flushAll(args [][]byte) {
	if len(args) > 2 || (len(args) == 2 && !strings.EqualFold(view(args[1]), "async") && !strings.EqualFold(view(args[1]), "sync")) {
		c.out = resp.AppendError(c.out, errSyntax)
		return
	}
	c.s.store.flush()
	c.out = resp.AppendOK(c.out)
}

func (c *conn) selectDB(args [][]byte) {
	n, ok := parseInt(args[1])
	switch {
	case !ok:
		c.out = resp.AppendError(c.out, errNotInt)
	case n != 0:
		c.out = resp.AppendError(c.out, errDBIndex)
	default:
		c.out = resp.AppendOK(c.out)
	}
}

// hello answers NOPROTO: RESP3 is not spoken, and the error makes clients
// (go-redis among them) fall back to RESP2 and authenticate with AUTH.
func (c *conn) hello([][]byte) {
	c.out = resp.AppendError(c.out, errNoProto)
}

func (c *conn) quitCmd([][]byte) {
	c.out = resp.AppendOK(c.out)
	c.quit = true
}

func (c *conn) serverTime([][]byte) {
	now := time.Now()
	c.out = resp.AppendArray(c.out, 2)
	c.out = resp.AppendBulkString(c.out, strconv.FormatInt(now.Unix(), 10))
	c.out = resp.AppendBulkString(c.out, strconv.Itoa(now.Nanosecond()/1000))
}

func unknownCommand(args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.WriteString(printableArg(args[0]))
	b.WriteString("', with args beginning with: ")
	for _, a := range args[1:min(len(args), 4)] {
		b.WriteString("'")
		b.WriteString(printableArg(a))
		b.WriteString("' ")
	}
	return b.String()
}

// printableArg shortens an argument and hides control bytes, for echoing it
// in an error message.
func printableArg(a []byte) string {
	if len(a) > 64 {
		a = a[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, string(a))
}

func (c *conn) get(key []byte) {
	sh := c.s.store.shard(key)
	sh.mu.Lock()
	v, ok := sh.lru.Get(view(key), c.now)
	sh.mu.Unlock()
	// Stored values are never written to after Set (every change stores a
	// new slice), so v can be read after the lock is released.
	c.appendValue(v, ok)
}

func (c *conn) appendValue(v []byte, ok bool) {
	if !ok {
		c.out = resp.AppendNull(c.out)
		return
	}
	c.out = resp.AppendBulk(c.out, v)
}

type setOptions struct {
	nx, xx, get bool
	deadline    int64 // Unix nanoseconds; 0 none; lru.KeepDeadline
}

// set parses SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL].
func (c *conn) set(args [][]byte) {
	var o setOptions
	hasExpiry := false
	for i := 3; i < len(args); i++ {
		opt := args[i]
		switch {
		case strings.EqualFold(view(opt), "nx") && !o.xx:
			o.nx = true
		case strings.EqualFold(view(opt), "xx") && !o.nx:
			o.xx = true
		case strings.EqualFold(view(opt), "get"):
			o.get = true
		case strings.EqualFold(view(opt), "keepttl") && !hasExpiry:
			o.deadline, hasExpiry = lru.KeepDeadline, true
		case !hasExpiry && i+1 < len(args) && isExpiryOption(opt):
			d, errMsg := c.deadlineOption(opt, args[i+1], "set")
			if errMsg != "" {
				c.out = resp.AppendError(c.out, errMsg)
				return
			}
			o.deadline, hasExpiry = d, true
			i++
		default:
			c.out = resp.AppendError(c.out, errSyntax)
			return
		}
	}
	c.setOpts(args[1], args[2], o, false)
}

func isExpiryOption(opt []byte) bool {
	s := view(opt)
	return strings.EqualFold(s, "ex") || strings.EqualFold(s, "px") ||
		strings.EqualFold(s, "exat") || strings.EqualFold(s, "pxat")
}

// deadlineOption turns EX, PX, EXAT or PXAT and its argument into a
// deadline, or an error message.
func (c *conn) deadlineOption(opt, arg []byte, cmd string) (int64, string) {
	s := view(opt)
	switch {
	case strings.EqualFold(s, "ex"):
		return c.deadlineIn(arg, time.Second, cmd)
	case strings.EqualFold(s, "px"):
		return c.deadlineIn(arg, time.Millisecond, cmd)
	}
	n, ok := parseInt(arg)
	if !ok {
		return 0, errNotInt
	}
	unit := int64(time.Millisecond)
	if strings.EqualFold(s, "exat") {
		unit = int64(time.Second)
	}
	if n <= 0 || n > math.MaxInt64/unit {
		return 0, errExpire(cmd)
	}
	return n * unit, ""
}

// deadlineIn is now plus a positive count of units.
func (c *conn) deadlineIn(arg []byte, unit time.Duration, cmd string) (int64, string) {
	n, ok := parseInt(arg)
	if !ok {
		return 0, errNotInt
	}
	if n <= 0 || n > (math.MaxInt64-c.now)/int64(unit) {
		return 0, errExpire(cmd)
	}
	return c.now + n*int64(unit), ""
}

// setOpts stores value under key as SET with options o does. intReply
// answers 1 or 0 (SETNX) instead of OK or nil.
func (c *conn) setOpts(key, value []byte, o setOptions, intReply bool) {
	sh := c.s.store.shard(key)
	sh.mu.Lock()
	var old []byte
	exists := false
	if o.nx || o.xx || o.get {
		old, exists = sh.lru.Peek(view(key), c.now)
	}
	if (o.nx && exists) || (o.xx && !exists) {
		sh.mu.Unlock()
		switch {
		case intReply:
			c.out = resp.AppendInt(c.out, 0)
		case o.get:
			c.appendValue(old, exists)
		default:
			c.out = resp.AppendNull(c.out)
		}
		return
	}
	stored := true
	if o.deadline > 0 && o.deadline <= c.now {
		// EXAT or PXAT in the past: the key is gone at once, as in Redis.
		sh.lru.Delete(view(key), c.now)
	} else {
		stored = c.s.store.set(sh, key, clone(value), o.deadline, c.now)
	}
	sh.mu.Unlock()
	switch {
	case !stored:
		c.out = resp.AppendError(c.out, errOOM)
	case intReply:
		c.out = resp.AppendInt(c.out, 1)
	case o.get:
		c.appendValue(old, exists)
	default:
		c.out = resp.AppendOK(c.out)
	}
}

// clone copies a value out of the read buffer into a slice of its own,
// whose capacity is its length, so the bytes accounted are the bytes held.
func clone(b []byte) []byte {
	v := make([]byte, len(b))
	copy(v, b)
	return v
}

func (c *conn) mset(args [][]byte) {
	if len(args)%2 != 1 {
		c.out = resp.AppendError(c.out, errArity("mset"))
		return
	}
	// Not atomic across shards: a concurrent reader may see some of the
	// keys set before others.
	for i := 1; i < len(args); i += 2 {
		sh := c.s.store.shard(args[i])
		sh.mu.Lock()
		ok := c.s.store.set(sh, args[i], clone(args[i+1]), 0, c.now)
		sh.mu.Unlock()
		if !ok {
			c.out = resp.AppendError(c.out, errOOM)
			return
		}
	}
	c.out = resp.AppendOK(c.out)
}

// getex: GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST].
func (c *conn) getex(args [][]byte) {
	deadline, change := int64(0), false
	switch {
	case len(args) == 2:
	case len(args) == 3 && strings.EqualFold(view(args[2]), "persist"):
		change = true
	case len(args) == 4 && isExpiryOption(args[2]):
		d, errMsg := c.deadlineOption(args[2], args[3], "getex")
		if errMsg != "" {
			c.out = resp.AppendError(c.out, errMsg)
			return
		}
		deadline, change = d, true
	default:
		c.out = resp.AppendError(c.out, errSyntax)
		return
	}
	key := view(args[1])
	sh := c.s.store.shard(args[1])
	sh.mu.Lock()
	v, ok := sh.lru.Get(key, c.now)
	if ok && change {
		sh.lru.SetDeadline(key, deadline, c.now)
	}
	sh.mu.Unlock()
	c.appendValue(v, ok)
}

// expire: EXPIRE key seconds [NX|XX|GT|LT], and PEXPIRE in milliseconds.
func (c *conn) expire(args [][]byte, name string, millis bool) {
	n, ok := parseInt(args[2])
	if !ok {
		c.out = resp.AppendError(c.out, errNotInt)
		return
	}
	unit := int64(time.Second)
	if millis {
		unit = int64(time.Millisecond)
	}
	if n > (math.MaxInt64-c.now)/unit || n < math.MinInt64/unit {
		c.out = resp.AppendError(c.out, errExpire(name))
		return
	}
	deadline := c.now + n*unit
	var nx, xx, gt, lt bool
	for _, opt := range args[3:] {
		switch s := view(opt); {
		case strings.EqualFold(s, "nx"):
			nx = true
		case strings.EqualFold(s, "xx"):
			xx = true
		case strings.EqualFold(s, "gt"):
			gt = true
		case strings.EqualFold(s, "lt"):
			lt = true
		default:
			c.out = resp.AppendError(c.out, "ERR Unsupported option "+printableArg(opt))
			return
		}
	}
	if (nx && (xx || gt || lt)) || (gt && lt) {
		c.out = resp.AppendError(c.out, "ERR NX and XX, GT or LT options at the same time are not compatible")
		return
	}
	key := view(args[1])
	sh := c.s.store.shard(args[1])
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur, ok := sh.lru.Deadline(key, c.now)
	if !ok {
		c.out = resp.AppendInt(c.out, 0)
		return
	}
	// No deadline counts as an infinite one for GT and LT, as in Redis.
	switch {
	case nx && cur != 0, xx && cur == 0, gt && (cur == 0 || deadline <= cur), lt && cur != 0 && deadline >= cur:
		c.out = resp.AppendInt(c.out, 0)
		return
	}
	if deadline <= c.now {
		sh.lru.Delete(key, c.now)
	} else {
		sh.lru.SetDeadline(key, deadline, c.now)
	}
	c.out = resp.AppendInt(c.out, 1)
}

func (c *conn) incrBy(key []byte, by int64) {
	sh := c.s.store.shard(key)
	sh.mu.Lock()
	v, exists := sh.lru.Peek(view(key), c.now)
	n := int64(0)
	if exists {
		var ok bool
		if n, ok = parseInt(v); !ok {
			sh.mu.Unlock()
			c.out = resp.AppendError(c.out, errNotInt)
			return
		}
	}
	if (by > 0 && n > math.MaxInt64-by) || (by < 0 && n < math.MinInt64-by) {
		sh.mu.Unlock()
		c.out = resp.AppendError(c.out, errOverflow)
		return
	}
	n += by
	// A new slice: readers may still be writing the old one to a socket.
	stored := c.s.store.set(sh, key, strconv.AppendInt(make([]byte, 0, 20), n, 10), lru.KeepDeadline, c.now)
	sh.mu.Unlock()
	if !stored {
		c.out = resp.AppendError(c.out, errOOM)
		return
	}
	c.out = resp.AppendInt(c.out, n)
}

func (c *conn) auth(args [][]byte) {
	var user, pass []byte
	switch len(args) {
	case 2:
		pass = args[1]
	case 3:
		user, pass = args[1], args[2]
	default:
		c.out = resp.AppendError(c.out, errSyntax)
		return
	}
	if c.s.cfg.Password == "" {
		c.out = resp.AppendError(c.out, errNoPassword)
		return
	}
	userOK := user == nil || view(user) == "default"
	passOK := subtle.ConstantTimeCompare(pass, []byte(c.s.cfg.Password)) == 1
	if !userOK || !passOK {
		// Slow guessing down: the reply waits AuthFailDelay, nothing else on
		// the connection runs meanwhile, and the third wrong try hangs up.
		c.out = resp.AppendError(c.out, errWrongPass)
		c.authFails++
		if d := c.s.cfg.AuthFailDelay; d > 0 {
			c.holdUntil = time.Now().Add(d).UnixNano()
		}
		if c.authFails >= maxAuthFailures {
			c.quit = true
		}
		c.s.authFailures.Add(1)
		c.s.log.Debug("cache AUTH failed", "conn", c.id, "remote", c.remote, "failures", c.authFails)
		return
	}
	c.authed = true
	c.out = resp.AppendOK(c.out)
}

func (c *conn) client(args [][]byte) {
	sub := view(args[1])
	switch {
	case strings.EqualFold(sub, "setname") && len(args) == 3:
		for _, b := range args[2] {
			if b <= ' ' || b > '~' {
				c.out = resp.AppendError(c.out, errClientName)
				return
			}
		}
		c.name = string(args[2])
		c.out = resp.AppendOK(c.out)
	case strings.EqualFold(sub, "getname") && len(args) == 2:
		if c.name == "" {
			c.out = resp.AppendNull(c.out)
		} else {
			c.out = resp.AppendBulkString(c.out, c.name)
		}
	case strings.EqualFold(sub, "setinfo") && len(args) == 4:
		attr := view(args[2])
		if !strings.EqualFold(attr, "lib-name") && !strings.EqualFold(attr, "lib-ver") {
			c.out = resp.AppendError(c.out, "ERR Unrecognized option '"+printableArg(args[2])+"'")
			return
		}
		c.out = resp.AppendOK(c.out)
	case strings.EqualFold(sub, "id") && len(args) == 2:
		c.out = resp.AppendInt(c.out, int64(c.id))
	case (strings.EqualFold(sub, "info") && len(args) == 2) || (strings.EqualFold(sub, "list") && len(args) == 2):
		c.out = resp.AppendBulkString(c.out, "id="+strconv.FormatUint(c.id, 10)+
			" addr="+c.remote+" laddr="+c.local+
			" name="+c.name+" db=0\n")
	default:
		c.out = resp.AppendError(c.out, "ERR unknown subcommand '"+printableArg(args[1])+"'. Try CLIENT HELP.")
	}
}

// parseInt parses a decimal int64 as strictly as Redis does: an optional
// minus, no plus, no spaces, no leading zeros.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > math.MaxInt64 {
		return 0, false
	}
	return int64(n), true
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
