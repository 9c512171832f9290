//! Loyalty without I/O: points earned for what a confirmed booking cost,
//! tiers by the points earned in the last twelve months (each with a
//! discount on ticket prices), and what spending points may take off.

use super::FieldError;

/// What one point is worth when spent, in minor units.
pub const POINT_VALUE_MINOR: i64 = 1;
/// Most points one booking may spend (a bound on the request, far above
/// any real balance).
pub const MAX_POINTS_PER_BOOKING: i64 = 100_000_000;

/// A loyalty tier, from the points earned (less reversed) in the last 12
/// months.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Member,
    Silver,
    Gold,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Member, Tier::Silver, Tier::Gold];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Silver => "silver",
            Self::Gold => "gold",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|tier| tier.as_str() == value)
    }

    /// Points in the last 12 months from which the tier holds.
    pub fn threshold(self) -> i64 {
        match self {
            Self::Member => 0,
            Self::Silver => 500,
            Self::Gold => 2_000,
        }
    }

    /// Percent off each ticket's price.
    pub fn discount_percent(self) -> i64 {
        match self {
            Self::Member => 0,
            Self::Silver => 5,
            Self::Gold => 10,
        }
    }

    pub fn of(points_last_12_months: i64) -> Self {
        Self::ALL
            .into_iter()
            .rev()
            .find(|tier| points_last_12_months >= tier.threshold())
            .unwrap_or(Self::Member)
    }

    pub fn next(self) -> Option<Self> {
        match self {
            Self::Member => Some(Self::Silver),
            Self::Silver => Some(Self::Gold),
            Self::Gold => None,
        }
    }

    /// The tier's discount on these ticket prices (rounded down per
    /// ticket).
    pub fn discount_on(self, prices: impl IntoIterator<Item = i64>) -> i64 {
        prices
            .into_iter()
            .map(|price| price * self.discount_percent() / 100)
            .sum()
    }
}

/// Points a confirmed booking earns: `per_unit` for every 100 minor units
/// of what was paid (fees included), rounded down.
pub fn points_earned(paid_minor: i64, per_unit: u32) -> i64 {
    paid_minor.max(0) / 100 * i64::from(per_unit)
}

/// Parses a requested spend: 0 (spend none) up to the per-booking bound.
pub fn parse_points(field: &str, points: i64) -> Result<i64, FieldError> {
    if !(0..=MAX_POINTS_PER_BOOKING).contains(&points) {
        return Err(FieldError::new(
            field,
            "must be from 0 to 100,000,000 points",
        ));
    }
    Ok(points)
}

/// Why points cannot be spent on a booking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpendRefusal {
    /// More than the balance (after giving back what this booking spent).
    InsufficientPoints,
    /// More than the tickets still cost after the other discounts.
    ExceedsTotal,
}

/// What spending `points` takes off a booking whose tickets still cost
/// `tickets_left_minor` after its other discounts, with `available` points
/// (the balance plus what this booking already spends).
pub fn spend(points: i64, available: i64, tickets_left_minor: i64) -> Result<i64, SpendRefusal> {
    if points > available {
        return Err(SpendRefusal::InsufficientPoints);
    }
    let discount = points * POINT_VALUE_MINOR;
    if discount > tickets_left_minor {
        return Err(SpendRefusal::ExceedsTotal);
    }
    Ok(discount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_last_twelve_months() {
        assert_eq!(Tier::of(0), Tier::Member);
        assert_eq!(Tier::of(-40), Tier::Member);
        assert_eq!(Tier::of(499), Tier::Member);
        assert_eq!(Tier::of(500), Tier::Silver);
        assert_eq!(Tier::of(2_000), Tier::Gold);
        assert_eq!(Tier::Silver.discount_on([4_000, 999]), 200 + 49);
        assert_eq!(Tier::Member.discount_on([4_000]), 0);
        assert_eq!(Tier::Gold.next(), None);
        for tier in Tier::ALL {
            assert_eq!(Tier::parse(tier.as_str()), Some(tier));
        }
    }

    #[test]
    fn points_are_earned_per_unit_paid() {
        assert_eq!(points_earned(10_300, 1), 103);
        assert_eq!(points_earned(99, 1), 0);
        assert_eq!(points_earned(10_000, 3), 300);
        assert_eq!(points_earned(-5, 1), 0);
    }

    #[test]
    fn spends_are_bounded_by_the_balance_and_the_tickets() {
        assert!(parse_points("points", -1).is_err());
        assert!(parse_points("points", MAX_POINTS_PER_BOOKING + 1).is_err());
        assert_eq!(parse_points("points", 0), Ok(0));
        assert_eq!(spend(100, 150, 4_000), Ok(100));
        assert_eq!(
            spend(200, 150, 4_000),
            Err(SpendRefusal::InsufficientPoints)
        );
        assert_eq!(spend(5_000, 10_000, 4_000), Err(SpendRefusal::ExceedsTotal));
        assert_eq!(spend(0, 0, 0), Ok(0));
    }
}
