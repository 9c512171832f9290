//! Promo codes without I/O: what a valid code is, whether one may be used
//! on a booking, and the discount it gives. The store counts redemptions
//! (atomically, under the code's row lock); these rules decide everything
//! else.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::FieldError;

/// Longest and shortest code text.
pub const MIN_CODE_LEN: usize = 3;
pub const MAX_CODE_LEN: usize = 32;
/// Failed applications (unknown or unusable codes) a user may make per
/// [`GUESS_WINDOW`] before they are refused outright.
pub const MAX_FAILED_GUESSES: i32 = 10;
pub const GUESS_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);
/// Price tiers one code may name at most.
pub const MAX_TIERS: usize = 100;

/// How a code discounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromoDiscount {
    /// Percent off each eligible ticket (1..=100).
    PercentOff(u8),
    /// An amount off the eligible tickets together.
    AmountOff { currency_code: String, minor: i64 },
    /// Each eligible ticket costs this much (cheaper ones keep their price).
    FixedPrice { currency_code: String, minor: i64 },
}

impl PromoDiscount {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PercentOff(_) => "percent_off",
            Self::AmountOff { .. } => "amount_off",
            Self::FixedPrice { .. } => "fixed_price",
        }
    }
}

/// A promo code as created and stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromoCode {
    pub id: Uuid,
    /// Upper-case.
    pub code: String,
    /// `None`: every event (or every event at `venue_id`).
    pub event_id: Option<Uuid>,
    /// Every event at this venue: an organiser's code (never with
    /// `event_id`).
    pub venue_id: Option<Uuid>,
    /// Empty: every tier.
    pub price_tier_ids: Vec<Uuid>,
    pub discount: PromoDiscount,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    /// 0: unlimited.
    pub max_redemptions: u32,
    /// 0: unlimited.
    pub max_per_user: u32,
    pub min_tickets: u32,
}

/// A code with its usage, as admins list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromoCodeUsage {
    pub code: PromoCode,
    pub redeemed: u32,
    pub returned: u32,
    pub created_at: DateTime<Utc>,
}

/// Why a code cannot be used on a booking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromoRefusal {
    Unknown,
    NotYetValid,
    Expired,
    Exhausted,
    UserLimit,
    WrongEvent,
    MinTickets,
    /// Nothing in the booking is discounted by it (no eligible tier, or a
    /// currency the booking is not priced in).
    NotApplicable,
    /// The discount would leave nothing to charge.
    ExceedsTotal,
}

/// Normalises what a buyer typed: trimmed, upper-case; `None` when it
/// cannot be any code (so it is refused without a database read, but
/// still counted as a guess).
pub fn normalise_code(text: &str) -> Option<String> {
    let text = text.trim();
    let valid = (MIN_CODE_LEN..=MAX_CODE_LEN).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    valid.then(|| text.to_ascii_uppercase())
}

/// Checks a code an admin is creating.
pub fn validate_new_code(code: &PromoCode) -> Result<(), FieldError> {
    if normalise_code(&code.code).as_deref() != Some(code.code.as_str()) {
        return Err(FieldError::new(
            "promo_code.code",
            "must be 3 to 32 of A-Z, 0-9, '-' and '_'",
        ));
    }
    if !code.price_tier_ids.is_empty() && code.event_id.is_none() {
        return Err(FieldError::new(
            "promo_code.price_tier_ids",
            "need promo_code.event_id",
        ));
    }
    if code.venue_id.is_some() && code.event_id.is_some() {
        return Err(FieldError::new(
            "promo_code.venue_id",
            "give either event_id or venue_id",
        ));
    }
    if code.price_tier_ids.len() > MAX_TIERS {
        return Err(FieldError::new(
            "promo_code.price_tier_ids",
            "at most 100 tiers",
        ));
    }
    match &code.discount {
        PromoDiscount::PercentOff(percent) if !(1..=100).contains(percent) => {
            return Err(FieldError::new(
                "promo_code.percent_off",
                "must be from 1 to 100",
            ));
        }
        PromoDiscount::AmountOff {
            currency_code,
            minor,
        }
        | PromoDiscount::FixedPrice {
            currency_code,
            minor,
        } => {
            if currency_code.len() != 3 || !currency_code.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(FieldError::new(
                    "promo_code.amount.currency_code",
                    "must be an ISO 4217 code",
                ));
            }
            let positive_needed = matches!(code.discount, PromoDiscount::AmountOff { .. });
            if *minor < 0 || (positive_needed && *minor == 0) || *minor > 10_000_000_000 {
                return Err(FieldError::new(
                    "promo_code.amount.amount_minor",
                    "must be positive (0 allowed for a fixed price) and at most 10^10",
                ));
            }
        }
        PromoDiscount::PercentOff(_) => {}
    }
    if let (Some(from), Some(until)) = (code.valid_from, code.valid_until)
        && from >= until
    {
        return Err(FieldError::new(
            "promo_code.valid_until",
            "must be after valid_from",
        ));
    }
    if code.max_redemptions > 10_000_000 || code.max_per_user > 10_000_000 {
        return Err(FieldError::new(
            "promo_code.max_redemptions",
            "at most 10,000,000",
        ));
    }
    if code.min_tickets > 1_000 {
        return Err(FieldError::new("promo_code.min_tickets", "at most 1,000"));
    }
    Ok(())
}

/// One ticket of a booking, as a discount sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscountedTicket {
    pub price_tier_id: Option<Uuid>,
    pub price_minor: i64,
}

/// What the booking looks like to a code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookingForPromo {
    pub event_id: Uuid,
    /// The venue of its event, as the catalog says (`None`: unknown).
    pub venue_id: Option<Uuid>,
    pub currency_code: String,
    pub fees_minor: i64,
    pub tickets: Vec<DiscountedTicket>,
    /// What its other discounts (loyalty points, tier) take off already.
    pub other_discounts_minor: i64,
}

/// The usage a code has when it is applied (read under its lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromoUsage {
    pub redeemed: u32,
    /// Redemptions this user holds on other bookings.
    pub redeemed_by_user: u32,
}

/// The discount `code` gives `booking` at `now` with its current usage, or
/// why it gives none. Checks in the order a buyer can act on them: the
/// code's window, its event, what it discounts, then its limits.
pub fn discount_for(
    code: &PromoCode,
    booking: &BookingForPromo,
    usage: PromoUsage,
    now: DateTime<Utc>,
) -> Result<i64, PromoRefusal> {
    if code.valid_from.is_some_and(|from| now < from) {
        return Err(PromoRefusal::NotYetValid);
    }
    if code.valid_until.is_some_and(|until| now >= until) {
        return Err(PromoRefusal::Expired);
    }
    if code.event_id.is_some_and(|event| event != booking.event_id) {
        return Err(PromoRefusal::WrongEvent);
    }
    if code
        .venue_id
        .is_some_and(|venue| Some(venue) != booking.venue_id)
    {
        return Err(PromoRefusal::WrongEvent);
    }
    let eligible: Vec<i64> = booking
        .tickets
        .iter()
        .filter(|ticket| {
            code.price_tier_ids.is_empty()
                || ticket
                    .price_tier_id
                    .is_some_and(|tier| code.price_tier_ids.contains(&tier))
        })
        .map(|ticket| ticket.price_minor)
        .collect();
    if eligible.is_empty() {
        return Err(PromoRefusal::WrongEvent);
    }
    if (eligible.len() as u32) < code.min_tickets {
        return Err(PromoRefusal::MinTickets);
    }
    let eligible_subtotal: i64 = eligible.iter().sum();
    let discount = match &code.discount {
        // Rounded down per ticket, so the buyer never sees a discount
        // larger than the percentage of any one line.
        PromoDiscount::PercentOff(percent) => eligible
            .iter()
            .map(|price| price * i64::from(*percent) / 100)
            .sum(),
        PromoDiscount::AmountOff {
            currency_code,
            minor,
        } => {
            if *currency_code != booking.currency_code {
                return Err(PromoRefusal::NotApplicable);
            }
            (*minor).min(eligible_subtotal)
        }
        PromoDiscount::FixedPrice {
            currency_code,
            minor,
        } => {
            if *currency_code != booking.currency_code {
                return Err(PromoRefusal::NotApplicable);
            }
            eligible.iter().map(|price| (price - minor).max(0)).sum()
        }
    };
    if discount <= 0 {
        return Err(PromoRefusal::NotApplicable);
    }
    let subtotal: i64 = booking.tickets.iter().map(|t| t.price_minor).sum();
    // Discounts take off ticket prices, never the fees; an amount off
    // takes off at most what the tickets still cost.
    let left = (subtotal - booking.other_discounts_minor).max(0);
    let discount = match &code.discount {
        PromoDiscount::AmountOff { .. } => discount.min(left),
        _ => discount,
    };
    if discount <= 0 || discount > left {
        return Err(PromoRefusal::ExceedsTotal);
    }
    if subtotal + booking.fees_minor - booking.other_discounts_minor - discount <= 0 {
        // A free booking would need no payment, which confirming cannot
        // take; refused rather than charged an amount nobody was shown.
        return Err(PromoRefusal::ExceedsTotal);
    }
    if code.max_redemptions > 0 && usage.redeemed >= code.max_redemptions {
        return Err(PromoRefusal::Exhausted);
    }
    if code.max_per_user > 0 && usage.redeemed_by_user >= code.max_per_user {
        return Err(PromoRefusal::UserLimit);
    }
    Ok(discount)
}

/// `promoCodes/{uuid}`.
pub fn promo_code_name(id: Uuid) -> String {
    format!("promoCodes/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(discount: PromoDiscount) -> PromoCode {
        PromoCode {
            id: Uuid::now_v7(),
            code: "SPRING".into(),
            event_id: None,
            venue_id: None,
            price_tier_ids: vec![],
            discount,
            valid_from: None,
            valid_until: None,
            max_redemptions: 0,
            max_per_user: 0,
            min_tickets: 0,
        }
    }

    fn booking(prices: &[(Option<Uuid>, i64)]) -> BookingForPromo {
        BookingForPromo {
            event_id: Uuid::now_v7(),
            venue_id: Some(Uuid::now_v7()),
            currency_code: "GBP".into(),
            fees_minor: 150 * prices.len() as i64,
            tickets: prices
                .iter()
                .map(|(tier, price)| DiscountedTicket {
                    price_tier_id: *tier,
                    price_minor: *price,
                })
                .collect(),
            other_discounts_minor: 0,
        }
    }

    const FREE: PromoUsage = PromoUsage {
        redeemed: 0,
        redeemed_by_user: 0,
    };

    fn gbp(minor: i64) -> (String, i64) {
        ("GBP".into(), minor)
    }

    #[test]
    fn codes_normalise_and_reject_junk() {
        assert_eq!(normalise_code(" spring-24 ").as_deref(), Some("SPRING-24"));
        assert_eq!(normalise_code("ab"), None);
        assert_eq!(normalise_code(&"x".repeat(33)), None);
        assert_eq!(normalise_code("50% OFF"), None);
        assert_eq!(normalise_code("DROP;--"), None);
    }

    #[test]
    fn each_kind_discounts_what_it_says() {
        let now = Utc::now();
        let two = booking(&[(None, 4_500), (None, 2_999)]);
        assert_eq!(
            discount_for(&code(PromoDiscount::PercentOff(10)), &two, FREE, now),
            Ok(450 + 299)
        );
        let (currency_code, minor) = gbp(1_000);
        assert_eq!(
            discount_for(
                &code(PromoDiscount::AmountOff {
                    currency_code,
                    minor
                }),
                &two,
                FREE,
                now
            ),
            Ok(1_000)
        );
        let (currency_code, minor) = gbp(3_000);
        assert_eq!(
            discount_for(
                &code(PromoDiscount::FixedPrice {
                    currency_code,
                    minor
                }),
                &two,
                FREE,
                now
            ),
            Ok(1_500),
            "the cheaper ticket keeps its price"
        );
    }

    #[test]
    fn an_amount_larger_than_the_tickets_takes_off_only_what_they_cost() {
        let one = booking(&[(None, 2_500)]);
        let (currency_code, minor) = gbp(1_000_000);
        let huge = code(PromoDiscount::AmountOff {
            currency_code,
            minor,
        });
        assert_eq!(discount_for(&huge, &one, FREE, Utc::now()), Ok(2_500));
        // Without fees nothing would be left to charge.
        let mut no_fees = one.clone();
        no_fees.fees_minor = 0;
        assert_eq!(
            discount_for(&huge, &no_fees, FREE, Utc::now()),
            Err(PromoRefusal::ExceedsTotal)
        );
        let euros = code(PromoDiscount::AmountOff {
            currency_code: "EUR".into(),
            minor: 100,
        });
        assert_eq!(
            discount_for(&euros, &one, FREE, Utc::now()),
            Err(PromoRefusal::NotApplicable)
        );
        // Points already take 2,000 off: the amount takes the rest only,
        // and a percentage that would pass the tickets' price is refused.
        let mut with_points = one.clone();
        with_points.other_discounts_minor = 2_000;
        assert_eq!(discount_for(&huge, &with_points, FREE, Utc::now()), Ok(500));
        with_points.other_discounts_minor = 2_500;
        assert_eq!(
            discount_for(
                &code(PromoDiscount::PercentOff(10)),
                &with_points,
                FREE,
                Utc::now()
            ),
            Err(PromoRefusal::ExceedsTotal)
        );
    }

    #[test]
    fn windows_events_tiers_and_limits_refuse_with_their_reason() {
        let now = Utc::now();
        let vip = Uuid::now_v7();
        let mut b = booking(&[(Some(vip), 9_000), (None, 4_500)]);
        let mut c = code(PromoDiscount::PercentOff(50));
        c.valid_until = Some(now);
        assert_eq!(discount_for(&c, &b, FREE, now), Err(PromoRefusal::Expired));
        c.valid_until = None;
        c.valid_from = Some(now + chrono::Duration::minutes(1));
        assert_eq!(
            discount_for(&c, &b, FREE, now),
            Err(PromoRefusal::NotYetValid)
        );
        c.valid_from = None;
        c.event_id = Some(Uuid::now_v7());
        assert_eq!(
            discount_for(&c, &b, FREE, now),
            Err(PromoRefusal::WrongEvent)
        );
        // An organiser's code: every event at its venue, no other.
        c.event_id = None;
        c.venue_id = Some(Uuid::now_v7());
        assert_eq!(
            discount_for(&c, &b, FREE, now),
            Err(PromoRefusal::WrongEvent)
        );
        c.venue_id = b.venue_id;
        assert_eq!(discount_for(&c, &b, FREE, now), Ok(4_500 + 2_250));
        let unknown_venue = BookingForPromo {
            venue_id: None,
            ..b.clone()
        };
        assert_eq!(
            discount_for(&c, &unknown_venue, FREE, now),
            Err(PromoRefusal::WrongEvent)
        );
        c.venue_id = None;
        c.event_id = Some(b.event_id);
        c.price_tier_ids = vec![vip];
        assert_eq!(
            discount_for(&c, &b, FREE, now),
            Ok(4_500),
            "only the VIP seat"
        );
        c.min_tickets = 2;
        assert_eq!(
            discount_for(&c, &b, FREE, now),
            Err(PromoRefusal::MinTickets)
        );
        c.min_tickets = 0;
        c.max_redemptions = 100;
        let used = PromoUsage {
            redeemed: 100,
            redeemed_by_user: 0,
        };
        assert_eq!(
            discount_for(&c, &b, used, now),
            Err(PromoRefusal::Exhausted)
        );
        c.max_per_user = 1;
        let mine = PromoUsage {
            redeemed: 3,
            redeemed_by_user: 1,
        };
        assert_eq!(
            discount_for(&c, &b, mine, now),
            Err(PromoRefusal::UserLimit)
        );
        b.tickets.retain(|t| t.price_tier_id.is_none());
        assert_eq!(
            discount_for(&c, &b, FREE, now),
            Err(PromoRefusal::WrongEvent),
            "no ticket of the code's tiers"
        );
    }

    #[test]
    fn new_codes_are_checked() {
        let mut c = code(PromoDiscount::PercentOff(0));
        assert!(validate_new_code(&c).is_err());
        c.discount = PromoDiscount::PercentOff(101);
        assert!(validate_new_code(&c).is_err());
        c.discount = PromoDiscount::PercentOff(100);
        assert!(validate_new_code(&c).is_ok());
        c.code = "spring".into();
        assert!(validate_new_code(&c).is_err(), "stored upper-case");
        c.code = "SPRING".into();
        c.price_tier_ids = vec![Uuid::now_v7()];
        assert!(validate_new_code(&c).is_err(), "tiers need an event");
        c.price_tier_ids.clear();
        c.event_id = Some(Uuid::now_v7());
        c.venue_id = Some(Uuid::now_v7());
        assert!(validate_new_code(&c).is_err(), "an event or a venue");
        c.event_id = None;
        assert!(validate_new_code(&c).is_ok(), "a venue's code");
        c.venue_id = None;
        c.discount = PromoDiscount::AmountOff {
            currency_code: "GBP".into(),
            minor: -5,
        };
        assert!(validate_new_code(&c).is_err());
        c.discount = PromoDiscount::FixedPrice {
            currency_code: "gbp".into(),
            minor: 0,
        };
        assert!(validate_new_code(&c).is_err());
        let now = Utc::now();
        c.discount = PromoDiscount::FixedPrice {
            currency_code: "GBP".into(),
            minor: 0,
        };
        c.valid_from = Some(now);
        c.valid_until = Some(now);
        assert!(validate_new_code(&c).is_err());
    }
}
