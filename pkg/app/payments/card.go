package payments

import (
	"strings"
	"time"

	"github.com/scalestack/scalestack/pkg/app/svc"
)

// Card is a payment card as the payer types it. It lives only for the
// length of a call: the service hands it to the processor and keeps a
// CardSummary, never the number or the CVC.
type Card struct {
	// Number is 12 to 19 digits; spaces and dashes are ignored.
	Number string `json:"number"`
	// ExpMonth is 1 to 12; ExpYear is four digits (two are read as 20YY).
	// The card is valid to the end of its expiry month.
	ExpMonth int `json:"exp_month"`
	ExpYear  int `json:"exp_year"`
	// CVC is 3 digits, 4 for American Express.
	CVC string `json:"cvc"`
}

// CardSummary is what is kept of a card: enough to show "Visa ending in
// 4242" and to tell a retry from another card, nothing that could charge it.
type CardSummary struct {
	Brand    string `json:"brand"`
	Last4    string `json:"last4"`
	ExpMonth int    `json:"exp_month"`
	ExpYear  int    `json:"exp_year"`
}

// Card brands, from the number's leading digits.
const (
	BrandVisa       = "visa"
	BrandMastercard = "mastercard"
	BrandAmex       = "amex"
	BrandDiscover   = "discover"
	BrandUnknown    = "unknown"
)

// maxExpiryYears is how far ahead an expiry may be; issuers use 3 to 5
// years, so one 20 years out is a typo.
const maxExpiryYears = 20

// normalizeNumber strips the spaces and dashes people type in a number.
func normalizeNumber(n string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, n)
}

// Luhn reports whether number (digits only) passes the Luhn check every
// card number carries in its last digit, which catches any single mistyped
// digit and most swaps of two neighbours before a charge is attempted.
func Luhn(number string) bool {
	if number == "" {
		return false
	}
	sum := 0
	for i := 0; i < len(number); i++ {
		c := number[len(number)-1-i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// Brand names the card network of number (digits only) from its prefix.
func Brand(number string) string {
	has := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(number, p) {
				return true
			}
		}
		return false
	}
	switch {
	case has("4"):
		return BrandVisa
	case has("34", "37"):
		return BrandAmex
	case has("51", "52", "53", "54", "55", "22", "23", "24", "25", "26", "27"):
		return BrandMastercard
	case has("6011", "65"):
		return BrandDiscover
	}
	return BrandUnknown
}

// CheckCard validates c as of now and returns it normalized (the number's
// digits only, a four-digit year) with its summary. Errors are
// *svc.FieldError naming card.number, card.exp_month, card.exp_year or
// card.cvc, in that order.
func CheckCard(c Card, now time.Time) (Card, CardSummary, error) {
	c.Number = normalizeNumber(c.Number)
	switch {
	case c.Number == "":
		return c, CardSummary{}, svc.Invalid("card.number", "is required")
	case strings.Trim(c.Number, "0123456789") != "":
		return c, CardSummary{}, svc.Invalid("card.number", "must be digits only")
	case len(c.Number) < 12 || len(c.Number) > 19:
		return c, CardSummary{}, svc.Invalid("card.number", "must be 12 to 19 digits")
	case !Luhn(c.Number):
		return c, CardSummary{}, svc.Invalid("card.number", "is not a valid card number (check the digits)")
	}
	brand := Brand(c.Number)
	if brand == BrandAmex && len(c.Number) != 15 {
		return c, CardSummary{}, svc.Invalid("card.number", "an American Express number has 15 digits")
	}
	if c.ExpMonth < 1 || c.ExpMonth > 12 {
		return c, CardSummary{}, svc.Invalid("card.exp_month", "must be 1 to 12")
	}
	if c.ExpYear >= 0 && c.ExpYear < 100 {
		c.ExpYear += 2000
	}
	now = now.UTC()
	switch {
	case c.ExpYear < now.Year() || c.ExpYear == now.Year() && c.ExpMonth < int(now.Month()):
		return c, CardSummary{}, svc.Invalid("card.exp_year", "the card has expired")
	case c.ExpYear > now.Year()+maxExpiryYears:
		return c, CardSummary{}, svc.Invalid("card.exp_year", "must be within %d years", maxExpiryYears)
	}
	wantCVC := 3
	if brand == BrandAmex {
		wantCVC = 4
	}
	if len(c.CVC) != wantCVC || strings.Trim(c.CVC, "0123456789") != "" {
		return c, CardSummary{}, svc.Invalid("card.cvc", "must be %d digits", wantCVC)
	}
	return c, CardSummary{Brand: brand, Last4: c.Number[len(c.Number)-4:], ExpMonth: c.ExpMonth, ExpYear: c.ExpYear}, nil
}
