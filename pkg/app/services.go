package app

import (
	"context"

	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/notify"
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/search"
	"github.com/scalestack/scalestack/pkg/store"
)

// The web handlers and the job handlers reach the blog's data only through
// these interfaces, one per service. Each service owns its buckets; none
// reads another's. Today each is the in-process implementation over one
// store; at stage 10 each can be a client of a service node with its own
// store group, without a change here.

// Accounts is the accounts service: users and the follow graph.
type Accounts interface {
	SignUp(ctx context.Context, handle, email, password string) (accounts.User, error)
	Authenticate(ctx context.Context, handle, password string) (accounts.User, error)
	User(ctx context.Context, id string) (accounts.User, error)
	UserByHandle(ctx context.Context, handle string) (accounts.User, error)
	Follow(ctx context.Context, follower, followee string) error
	Unfollow(ctx context.Context, follower, followee string) error
	IsFollowing(ctx context.Context, follower, followee string) (bool, error)
	Following(ctx context.Context, id string) ([]string, error)
	Followers(ctx context.Context, id string) ([]string, error)
	// Badge is the user's supporter badge, svc.ErrNotFound when none.
	Badge(ctx context.Context, userID string) (accounts.Badge, error)
}

// Posts is the posts service.
type Posts interface {
	Create(ctx context.Context, d posts.Draft) (posts.Post, error)
	Get(ctx context.Context, id string) (posts.Post, error)
	Many(ctx context.Context, ids []string) ([]posts.Post, error)
	Update(ctx context.Context, id string, p posts.Patch) (posts.Post, error)
	SetThumb(ctx context.Context, id, image, thumb string) (posts.Post, error)
	AddView(ctx context.Context, id, jobID string) error
	SetComments(ctx context.Context, id string, n int) error
	Delete(ctx context.Context, id string) error
	Feed(ctx context.Context, page, size int) ([]posts.Post, bool, error)
	ByAuthor(ctx context.Context, authorID string, page, size int) ([]posts.Post, bool, error)
	ByTag(ctx context.Context, tag string, page, size int) ([]posts.Post, bool, error)
	Drafts(ctx context.Context, authorID string, limit int) ([]posts.Post, error)
}

// Comments is the comments service.
type Comments interface {
	Create(ctx context.Context, postID, authorID, author, body string) (comments.Comment, error)
	List(ctx context.Context, postID string) ([]comments.Comment, error)
	Count(ctx context.Context, postID string) (int, error)
	DeleteForPost(ctx context.Context, postID string) error
}

// Media is the media service: content-addressed images and thumbnails.
type Media interface {
	Put(ctx context.Context, data []byte) (media.Meta, error)
	Get(ctx context.Context, name string) (media.Meta, []byte, error)
	Thumbnail(ctx context.Context, name string) (media.Meta, error)
}

// Search is the search service.
type Search interface {
	Index(ctx context.Context, postID, title string, tags []string, body string) error
	Remove(ctx context.Context, postID string) error
	Query(ctx context.Context, q string, limit int) ([]string, error)
}

// Notifications is the notifications service.
type Notifications interface {
	Add(ctx context.Context, n notify.Notification, userIDs ...string) error
	List(ctx context.Context, userID string, limit int) ([]notify.Notification, error)
}

// Payments is the payments service: tips and the supporter badge, charged
// under the payer's idempotency key (docs/payments.md).
type Payments interface {
	Tip(ctx context.Context, req payments.TipRequest) (payments.Payment, error)
	BuySupporterBadge(ctx context.Context, req payments.BadgeRequest) (payments.Payment, error)
	Payment(ctx context.Context, id string) (payments.Payment, error)
	ForUser(ctx context.Context, userID string, limit int) ([]payments.Payment, error)
	TipsFor(ctx context.Context, authorID string) (payments.TipTotals, error)
}

// Services is the set of services the blog is made of.
type Services struct {
	Accounts      Accounts
	Posts         Posts
	Comments      Comments
	Media         Media
	Search        Search
	Notifications Notifications
	// Payments may be nil (services given by a test, or a gateway without
	// a payments client): the payment routes answer 503, and pages show
	// no tip form.
	Payments Payments
}

// NewServices returns every service in-process over one store. bcryptCost
// is the password hashing cost (see Config.BcryptCost).
//
// Payments charges the simulated card processor (payments.Simulated) in
// this process's memory, and grants the badges it sells in-process
// (localPayments).
func NewServices(st store.Store, bcryptCost int) Services {
	users := accounts.New(st, bcryptCost)
	return Services{
		Accounts:      users,
		Posts:         posts.New(st),
		Comments:      comments.New(st),
		Media:         media.New(st),
		Search:        search.New(st),
		Notifications: notify.New(st),
		Payments:      localPayments{Service: payments.New(st, payments.NewSimulated()), users: users},
	}
}
