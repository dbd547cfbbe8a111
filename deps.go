package deps

import (
	_ "github.com/hashicorp/memberlist"
	_ "go.etcd.io/bbolt"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "golang.org/x/crypto/bcrypt"
	_ "github.com/yuin/goldmark"
	_ "golang.org/x/image/draw"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/tidwall/redcon"
	_ "github.com/hashicorp/golang-lru/v2"
	_ "github.com/maypok86/otter/v2"
	_ "github.com/HdrHistogram/hdrhistogram-go"
	_ "github.com/chromedp/chromedp"
	_ "github.com/anishathalye/porcupine"
	_ "golang.org/x/sync/singleflight"
)
