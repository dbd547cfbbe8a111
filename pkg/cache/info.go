package cache

import (
	"fmt"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/scalestack/scalestack/pkg/cache/resp"
)

// commandID names a command of the table below.
type commandID int

const (
	cmdUnknown commandID = iota
	cmdAuth
	cmdClient
	cmdCommand
	cmdConfig
	cmdDBSize
	cmdDecr
	cmdDecrBy
	cmdDel
	cmdEcho
	cmdExists
	cmdExpire
	cmdFlushAll
	cmdFlushDB
	cmdGet
	cmdGetDel
	cmdGetEx
	cmdHello
	cmdIncr
	cmdIncrBy
	cmdInfo
	cmdMGet
	cmdMSet
	cmdPExpire
	cmdPSetEX
	cmdPTTL
	cmdPersist
	cmdPing
	cmdQuit
	cmdSelect
	cmdSet
	cmdSetEX
	cmdSetNX
	cmdStrlen
	cmdTTL
	cmdTime
	cmdType
	cmdUnlink
	numCommands
)

// commandSpec describes a command as COMMAND reports it. arity counts the
// command name; a negative arity means "at least".
type commandSpec struct {
	name                    string
	arity                   int
	flags                   []string
	firstKey, lastKey, step int
	group, since, summary   string
	noAuth                  bool // allowed before AUTH
}

// commandTable is read-only after compilation.
var commandTable = [numCommands]commandSpec{
	cmdAuth:     {"auth", -2, []string{"noscript", "loading", "stale", "fast", "no_auth"}, 0, 0, 0, "connection", "1.0.0", "Authenticates the connection.", true},
	cmdClient:   {"client", -2, []string{"loading", "stale"}, 0, 0, 0, "connection", "2.4.0", "CLIENT SETNAME, GETNAME, SETINFO, ID, INFO.", false},
	cmdCommand:  {"command", -1, []string{"loading", "stale"}, 0, 0, 0, "server", "2.8.13", "Returns detailed information about all commands.", false},
	cmdConfig:   {"config", -2, []string{"admin", "noscript", "loading", "stale"}, 0, 0, 0, "server", "2.0.0", "CONFIG GET of the settings tools ask for; CONFIG SET is refused.", false},
	cmdDBSize:   {"dbsize", 1, []string{"readonly", "fast"}, 0, 0, 0, "server", "1.0.0", "Returns the number of keys.", false},
	cmdDecr:     {"decr", 2, []string{"write", "denyoom", "fast"}, 1, 1, 1, "string", "1.0.0", "Decrements the integer value of a key by one.", false},
	cmdDecrBy:   {"decrby", 3, []string{"write", "denyoom", "fast"}, 1, 1, 1, "string", "1.0.0", "Decrements the integer value of a key by a number.", false},
	cmdDel:      {"del", -2, []string{"write"}, 1, -1, 1, "generic", "1.0.0", "Deletes one or more keys.", false},
	cmdEcho:     {"echo", 2, []string{"fast"}, 0, 0, 0, "connection", "1.0.0", "Returns the given string.", false},
	cmdExists:   {"exists", -2, []string{"readonly", "fast"}, 1, -1, 1, "generic", "1.0.0", "Counts how many of the keys exist.", false},
	cmdExpire:   {"expire", -3, []string{"write", "fast"}, 1, 1, 1, "generic", "1.0.0", "Sets a key's time to live in seconds.", false},
	cmdFlushAll: {"flushall", -1, []string{"write"}, 0, 0, 0, "server", "1.0.0", "Removes all keys.", false},
	cmdFlushDB:  {"flushdb", -1, []string{"write"}, 0, 0, 0, "server", "1.0.0", "Removes all keys.", false},
	cmdGet:      {"get", 2, []string{"readonly", "fast"}, 1, 1, 1, "string", "1.0.0", "Returns the value of a key.", false},
	cmdGetDel:   {"getdel", 2, []string{"write", "fast"}, 1, 1, 1, "string", "6.2.0", "Returns the value of a key and deletes it.", false},
	cmdGetEx:    {"getex", -2, []string{"write", "fast"}, 1, 1, 1, "string", "6.2.0", "Returns the value of a key and sets or clears its expiration.", false},
	cmdHello:    {"hello", -1, []string{"noscript", "loading", "stale", "fast", "no_auth"}, 0, 0, 0, "connection", "6.0.0", "Answers NOPROTO: only RESP2 is spoken.", true},
	cmdIncr:     {"incr", 2, []string{"write", "denyoom", "fast"}, 1, 1, 1, "string", "1.0.0", "Increments the integer value of a key by one.", false},
	cmdIncrBy:   {"incrby", 3, []string{"write", "denyoom", "fast"}, 1, 1, 1, "string", "1.0.0", "Increments the integer value of a key by a number.", false},
	cmdInfo:     {"info", -1, []string{"loading", "stale"}, 0, 0, 0, "server", "1.0.0", "Returns information and statistics about the server.", false},
	cmdMGet:     {"mget", -2, []string{"readonly", "fast"}, 1, -1, 1, "string", "1.0.0", "Returns the values of one or more keys.", false},
	cmdMSet:     {"mset", -3, []string{"write", "denyoom"}, 1, -1, 2, "string", "1.0.1", "Sets the values of one or more keys.", false},
	cmdPExpire:  {"pexpire", -3, []string{"write", "fast"}, 1, 1, 1, "generic", "2.6.0", "Sets a key's time to live in milliseconds.", false},
	cmdPSetEX:   {"psetex", 4, []string{"write", "denyoom"}, 1, 1, 1, "string", "2.6.0", "Sets a key's value and time to live in milliseconds.", false},
	cmdPTTL:     {"pttl", 2, []string{"readonly", "fast"}, 1, 1, 1, "generic", "2.6.0", "Returns a key's time to live in milliseconds.", false},
	cmdPersist:  {"persist", 2, []string{"write", "fast"}, 1, 1, 1, "generic", "2.2.0", "Removes a key's expiration.", false},
	cmdPing:     {"ping", -1, []string{"fast"}, 0, 0, 0, "connection", "1.0.0", "Returns PONG, or the given message.", false},
	cmdQuit:     {"quit", -1, []string{"noscript", "loading", "stale", "fast", "no_auth"}, 0, 0, 0, "connection", "1.0.0", "Closes the connection.", true},
	cmdSelect:   {"select", 2, []string{"loading", "stale", "fast"}, 0, 0, 0, "connection", "1.0.0", "Selects database 0, the only one.", false},
	cmdSet:      {"set", -3, []string{"write", "denyoom"}, 1, 1, 1, "string", "1.0.0", "Sets a key's value, with NX, XX, GET, EX, PX, EXAT, PXAT, KEEPTTL.", false},
	cmdSetEX:    {"setex", 4, []string{"write", "denyoom"}, 1, 1, 1, "string", "2.0.0", "Sets a key's value and time to live in seconds.", false},
	cmdSetNX:    {"setnx", 3, []string{"write", "denyoom", "fast"}, 1, 1, 1, "string", "1.0.0", "Sets a key's value only if it does not exist.", false},
	cmdStrlen:   {"strlen", 2, []string{"readonly", "fast"}, 1, 1, 1, "string", "2.2.0", "Returns the length of a value.", false},
	cmdTTL:      {"ttl", 2, []string{"readonly", "fast"}, 1, 1, 1, "generic", "1.0.0", "Returns a key's time to live in seconds.", false},
	cmdTime:     {"time", 1, []string{"loading", "stale", "fast"}, 0, 0, 0, "server", "2.6.0", "Returns the server time.", false},
	cmdType:     {"type", 2, []string{"readonly", "fast"}, 1, 1, 1, "generic", "1.0.0", "Returns the type of a key: string or none.", false},
	cmdUnlink:   {"unlink", -2, []string{"write", "fast"}, 1, -1, 1, "generic", "4.0.0", "Deletes one or more keys.", false},
}

// lookupCommand finds a command by name, in any case, without allocating.
func lookupCommand(name []byte) commandID {
	var buf [16]byte
	if len(name) > len(buf) {
		return cmdUnknown
	}
	for i, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	switch string(buf[:len(name)]) {
	case "get":
		return cmdGet
	case "set":
		return cmdSet
	case "ping":
		return cmdPing
	case "mget":
		return cmdMGet
	case "mset":
		return cmdMSet
	case "del":
		return cmdDel
	case "exists":
		return cmdExists
	case "expire":
		return cmdExpire
	case "pexpire":
		return cmdPExpire
	case "ttl":
		return cmdTTL
	case "pttl":
		return cmdPTTL
	case "incr":
		return cmdIncr
	case "incrby":
		return cmdIncrBy
	case "decr":
		return cmdDecr
	case "decrby":
		return cmdDecrBy
	case "getex":
		return cmdGetEx
	case "getdel":
		return cmdGetDel
	case "setex":
		return cmdSetEX
	case "psetex":
		return cmdPSetEX
	case "setnx":
		return cmdSetNX
	case "persist":
		return cmdPersist
	case "unlink":
		return cmdUnlink
	case "strlen":
		return cmdStrlen
	case "type":
		return cmdType
	case "echo":
		return cmdEcho
	case "dbsize":
		return cmdDBSize
	case "flushall":
		return cmdFlushAll
	case "flushdb":
		return cmdFlushDB
	case "info":
		return cmdInfo
	case "command":
		return cmdCommand
	case "config":
		return cmdConfig
	case "select":
		return cmdSelect
	case "client":
		return cmdClient
	case "hello":
		return cmdHello
	case "auth":
		return cmdAuth
	case "quit":
		return cmdQuit
	case "time":
		return cmdTime
	}
	return cmdUnknown
}

// command answers COMMAND, COMMAND COUNT, COMMAND LIST, COMMAND INFO and
// COMMAND DOCS, which redis-cli asks for its hints and completion.
func (c *conn) command(args [][]byte) {
	if len(args) == 1 {
		c.out = resp.AppendArray(c.out, int(numCommands)-1)
		for id := commandID(1); id < numCommands; id++ {
			c.out = appendCommandInfo(c.out, &commandTable[id])
		}
		return
	}
	sub := view(args[1])
	switch {
	case strings.EqualFold(sub, "count") && len(args) == 2:
		c.out = resp.AppendInt(c.out, int64(numCommands)-1)
	case strings.EqualFold(sub, "list") && len(args) == 2:
		c.out = resp.AppendArray(c.out, int(numCommands)-1)
		for id := commandID(1); id < numCommands; id++ {
			c.out = resp.AppendBulkString(c.out, commandTable[id].name)
		}
	case strings.EqualFold(sub, "info"):
		c.out = resp.AppendArray(c.out, len(args)-2)
		for _, name := range args[2:] {
			if id := lookupCommand(name); id != cmdUnknown {
				c.out = appendCommandInfo(c.out, &commandTable[id])
			} else {
				c.out = append(c.out, "*-1\r\n"...)
			}
		}
	case strings.EqualFold(sub, "docs"):
		var ids []commandID
		if len(args) == 2 {
			for id := commandID(1); id < numCommands; id++ {
				ids = append(ids, id)
			}
		} else {
			for _, name := range args[2:] {
				if id := lookupCommand(name); id != cmdUnknown {
					ids = append(ids, id)
				}
			}
		}
		// RESP2 has no map: a flat array of name, doc, name, doc.
		c.out = resp.AppendArray(c.out, 2*len(ids))
		for _, id := range ids {
			spec := &commandTable[id]
			c.out = resp.AppendBulkString(c.out, spec.name)
			c.out = resp.AppendArray(c.out, 6)
			c.out = resp.AppendBulkString(c.out, "summary")
			c.out = resp.AppendBulkString(c.out, spec.summary)
			c.out = resp.AppendBulkString(c.out, "since")
			c.out = resp.AppendBulkString(c.out, spec.since)
			c.out = resp.AppendBulkString(c.out, "group")
			c.out = resp.AppendBulkString(c.out, spec.group)
		}
	default:
		c.out = resp.AppendError(c.out, "ERR unknown subcommand '"+printableArg(args[1])+"'. Try COMMAND HELP.")
	}
}

// appendCommandInfo writes a command's entry as Redis 7 does: name, arity,
// flags, first key, last key, step, ACL categories, tips, key specs and
// subcommands (the last three empty here).
func appendCommandInfo(b []byte, spec *commandSpec) []byte {
	b = resp.AppendArray(b, 10)
	b = resp.AppendBulkString(b, spec.name)
	b = resp.AppendInt(b, int64(spec.arity))
	b = resp.AppendArray(b, len(spec.flags))
	for _, f := range spec.flags {
		b = resp.AppendSimple(b, f)
	}
	b = resp.AppendInt(b, int64(spec.firstKey))
	b = resp.AppendInt(b, int64(spec.lastKey))
	b = resp.AppendInt(b, int64(spec.step))
	b = resp.AppendArray(b, 1)
	b = resp.AppendSimple(b, "@"+spec.group)
	b = resp.AppendArray(b, 0)
	b = resp.AppendArray(b, 0)
	return resp.AppendArray(b, 0)
}

// info renders INFO in Redis's format: "# Section" headers, "field:value"
// lines ending in CRLF, and a blank line between sections, so that tools
// that parse Redis's INFO parse ours. Field names are Redis's.
func (s *Server) info(sections [][]byte) string {
	want := func(name string) bool {
		if len(sections) == 0 {
			return true
		}
		for _, sec := range sections {
			v := view(sec)
			if strings.EqualFold(v, name) || strings.EqualFold(v, "all") ||
				strings.EqualFold(v, "everything") || strings.EqualFold(v, "default") {
				return true
			}
		}
		return false
	}
	t := s.store.totals()
	var b strings.Builder
	section := func(name string, fields ...string) {
		if !want(name) {
			return
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# " + name + "\r\n")
		for i := 0; i+1 < len(fields); i += 2 {
			b.WriteString(fields[i] + ":" + fields[i+1] + "\r\n")
		}
	}
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	utoa := func(n uint64) string { return strconv.FormatUint(n, 10) }
	_, port, _ := strings.Cut(s.Addr(), "]:")
	if port == "" {
		if i := strings.LastIndexByte(s.Addr(), ':'); i >= 0 {
			port = s.Addr()[i+1:]
		}
	}
	uptime := time.Since(s.started)
	section("Server",
		// The Redis version whose commands and replies this server follows,
		// for tools that check it.
		"redis_version", "7.0.0",
		"redis_mode", "standalone",
		"server_name", "scalestack-cache",
		"node_name", s.cfg.NodeName,
		"os", runtime.GOOS+" "+runtime.GOARCH,
		"arch_bits", strconv.Itoa(strconv.IntSize),
		"go_version", runtime.Version(),
		"process_id", strconv.Itoa(os.Getpid()),
		"tcp_port", port,
		"hostname", hostname(),
		"uptime_in_seconds", itoa(int64(uptime.Seconds())),
		"uptime_in_days", itoa(int64(uptime.Hours()/24)),
		"hz", strconv.Itoa(int(time.Second/s.cfg.ExpireInterval)),
	)
	section("Clients",
		"connected_clients", itoa(s.connsOpen.Load()),
		"maxclients", strconv.Itoa(s.cfg.MaxClients),
	)
	section("Memory",
		"used_memory", itoa(t.bytes),
		"used_memory_human", humanBytes(t.bytes),
		"maxmemory", itoa(s.cfg.MaxBytes),
		"maxmemory_human", humanBytes(s.cfg.MaxBytes),
		"maxmemory_policy", "allkeys-lru",
	)
	hitRatio := 0.0
	if n := t.stats.Hits + t.stats.Misses; n > 0 {
		hitRatio = float64(t.stats.Hits) / float64(n)
	}
	section("Stats",
		"total_connections_received", utoa(s.connsTotal.Load()),
		"total_commands_processed", utoa(s.commands.Load()),
		"instantaneous_ops_per_sec", strconv.FormatFloat(s.status().OpsPerSec, 'f', 0, 64),
		"rejected_connections", utoa(s.connsRefuse.Load()),
		"expired_keys", utoa(t.stats.Expired),
		"evicted_keys", utoa(t.stats.Evictions),
		"keyspace_hits", utoa(t.stats.Hits),
		"keyspace_misses", utoa(t.stats.Misses),
		"keyspace_hit_ratio", strconv.FormatFloat(hitRatio, 'f', 4, 64),
	)
	keyspace := []string{}
	if t.keys > 0 {
		keyspace = []string{"db0", fmt.Sprintf("keys=%d,expires=%d,avg_ttl=0", t.keys, t.expiring)}
	}
	section("Keyspace", keyspace...)
	return b.String()
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 2, 64) + "G"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 2, 64) + "M"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 2, 64) + "K"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// config answers CONFIG GET for the settings tools read (redis-benchmark
// asks for save and appendonly), from the server's Config. Settings are
// flags, fixed at start: CONFIG SET is refused.
func (c *conn) config(args [][]byte) {
	if !strings.EqualFold(view(args[1]), "get") {
		c.out = resp.AppendError(c.out, "ERR CONFIG "+strings.ToUpper(printableArg(args[1]))+" is not supported: settings are flags, fixed at start")
		return
	}
	if len(args) < 3 {
		c.out = resp.AppendError(c.out, errArity("config|get"))
		return
	}
	cfg := &c.s.cfg
	params := [][2]string{
		{"maxmemory", strconv.FormatInt(cfg.MaxBytes, 10)},
		{"maxmemory-policy", "allkeys-lru"},
		{"maxclients", strconv.Itoa(cfg.MaxClients)},
		{"timeout", strconv.Itoa(int(cfg.IdleTimeout.Seconds()))},
		{"proto-max-bulk-len", strconv.Itoa(cfg.MaxValueBytes)},
		{"databases", "1"},
		{"save", ""},
		{"appendonly", "no"},
		{"hz", strconv.Itoa(int(time.Second / cfg.ExpireInterval))},
	}
	var found [][2]string
	for _, p := range params {
		for _, pattern := range args[2:] {
			if ok, _ := path.Match(strings.ToLower(view(pattern)), p[0]); ok {
				found = append(found, p)
				break
			}
		}
	}
	c.out = resp.AppendArray(c.out, 2*len(found))
	for _, p := range found {
		c.out = resp.AppendBulkString(c.out, p[0])
		c.out = resp.AppendBulkString(c.out, p[1])
	}
}
