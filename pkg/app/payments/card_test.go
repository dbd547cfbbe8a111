package payments_test

import (
	"errors"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/svc"
)

func TestLuhn(t *testing.T) {
	for number, want := range map[string]bool{
		payments.CardVisa:       true,
		payments.CardAmex:       true,
		payments.CardTimeout:    true,
		"4242424242424241":      false, // last digit off by one
		"4242424242422442":      false, // two neighbours swapped
		"0":                     true,
		"":                      false,
		"4242 4242 4242 4242":   false, // Luhn wants digits only
		"79927398713":           true,
		"79927398710":           false,
		payments.CardMastercard: true,
	} {
		if got := payments.Luhn(number); got != want {
			t.Errorf("Luhn(%q) = %v, want %v", number, got, want)
		}
	}
}

func TestBrand(t *testing.T) {
	for number, want := range map[string]string{
		payments.CardVisa:       payments.BrandVisa,
		payments.CardMastercard: payments.BrandMastercard,
		"2223003122003222":      payments.BrandMastercard,
		payments.CardAmex:       payments.BrandAmex,
		"6011111111111117":      payments.BrandDiscover,
		"3056930009020004":      payments.BrandUnknown,
	} {
		if got := payments.Brand(number); got != want {
			t.Errorf("Brand(%q) = %q, want %q", number, got, want)
		}
	}
}

func TestCheckCard(t *testing.T) {
	now := time.Date(2026, time.June, 15, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name  string
		card  payments.Card
		field string // "" for a valid card
	}{
		{"visa", payments.Card{Number: payments.CardVisa, ExpMonth: 12, ExpYear: 2028, CVC: "123"}, ""},
		{"spaces and dashes", payments.Card{Number: "4242 4242-4242 4242", ExpMonth: 12, ExpYear: 2028, CVC: "123"}, ""},
		{"two-digit year", payments.Card{Number: payments.CardVisa, ExpMonth: 12, ExpYear: 28, CVC: "123"}, ""},
		{"expires this month", payments.Card{Number: payments.CardVisa, ExpMonth: 6, ExpYear: 2026, CVC: "123"}, ""},
		{"amex", payments.Card{Number: payments.CardAmex, ExpMonth: 1, ExpYear: 2030, CVC: "1234"}, ""},
		{"empty number", payments.Card{ExpMonth: 12, ExpYear: 2028, CVC: "123"}, "card.number"},
		{"letters", payments.Card{Number: "4242x24242424242", ExpMonth: 12, ExpYear: 2028, CVC: "123"}, "card.number"},
		{"short", payments.Card{Number: "42424242424", ExpMonth: 12, ExpYear: 2028, CVC: "123"}, "card.number"},
		{"luhn", payments.Card{Number: "4242424242424241", ExpMonth: 12, ExpYear: 2028, CVC: "123"}, "card.number"},
		{"amex of 16 digits", payments.Card{Number: "3400000000000000", ExpMonth: 12, ExpYear: 2028, CVC: "1234"}, "card.number"},
		{"month 13", payments.Card{Number: payments.CardVisa, ExpMonth: 13, ExpYear: 2028, CVC: "123"}, "card.exp_month"},
		{"month 0", payments.Card{Number: payments.CardVisa, ExpMonth: 0, ExpYear: 2028, CVC: "123"}, "card.exp_month"},
		{"expired last month", payments.Card{Number: payments.CardVisa, ExpMonth: 5, ExpYear: 2026, CVC: "123"}, "card.exp_year"},
		{"expired last year", payments.Card{Number: payments.CardVisa, ExpMonth: 12, ExpYear: 2025, CVC: "123"}, "card.exp_year"},
		{"too far ahead", payments.Card{Number: payments.CardVisa, ExpMonth: 12, ExpYear: 2050, CVC: "123"}, "card.exp_year"},
		{"cvc short", payments.Card{Number: payments.CardVisa, ExpMonth: 12, ExpYear: 2028, CVC: "12"}, "card.cvc"},
		{"cvc letters", payments.Card{Number: payments.CardVisa, ExpMonth: 12, ExpYear: 2028, CVC: "12a"}, "card.cvc"},
		{"amex cvc of 3", payments.Card{Number: payments.CardAmex, ExpMonth: 12, ExpYear: 2028, CVC: "123"}, "card.cvc"},
	} {
		_, sum, err := payments.CheckCard(tt.card, now)
		var fe *svc.FieldError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%s: CheckCard = %v, want it valid", tt.name, err)
		case tt.field == "" && (sum.Last4 != tt.card.Number[len(tt.card.Number)-4:] || sum.ExpYear < 2000):
			t.Errorf("%s: summary = %+v, want the last 4 digits and a four-digit year", tt.name, sum)
		case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field):
			t.Errorf("%s: CheckCard = %v, want a field error on %s", tt.name, err, tt.field)
		}
	}
}

// FuzzCheckCard: any input is either refused with a field error or
// accepted with a summary that holds no more of the number than its last 4.
func FuzzCheckCard(f *testing.F) {
	f.Add(payments.CardVisa, 12, 2030, "123")
	f.Add("3782 8224 6310 005", 1, 31, "1234")
	f.Add("", 0, 0, "")
	now := time.Date(2026, time.June, 15, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, number string, month, year int, cvc string) {
		c, sum, err := payments.CheckCard(payments.Card{Number: number, ExpMonth: month, ExpYear: year, CVC: cvc}, now)
		if err != nil {
			var fe *svc.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("CheckCard error %v is not a field error", err)
			}
			return
		}
		if !payments.Luhn(c.Number) || len(sum.Last4) != 4 || c.Number[len(c.Number)-4:] != sum.Last4 {
			t.Fatalf("CheckCard accepted %q as %q with summary %+v", number, c.Number, sum)
		}
	})
}
