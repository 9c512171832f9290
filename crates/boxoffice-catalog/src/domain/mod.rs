//! The catalog's rules, free of I/O: what a valid venue, performer, event and
//! price tier is, and how an event may change over its life.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Limits on what one request may create; explicit so clients can rely on them.
pub mod limits {
    pub const NAME_MAX_CHARS: usize = 200;
    pub const DESCRIPTION_MAX_CHARS: usize = 10_000;
    pub const SECTIONS_PER_VENUE: usize = 500;
    pub const ROWS_PER_SECTION: usize = 500;
    pub const SEATS_PER_ROW: usize = 1_000;
    /// A venue of at most this many places, seats and general admission together.
    pub const PLACES_PER_VENUE: u64 = 120_000;
    pub const PERFORMERS_PER_EVENT: usize = 50;
    pub const PRICE_TIERS_PER_EVENT: usize = 100;
    /// About a hundred million in minor units of any currency.
    pub const PRICE_MAX_MINOR: i64 = 10_000_000_000;
    pub const CANCEL_REASON_MAX_CHARS: usize = 1_000;
}

pub use boxoffice_runtime::field::{FieldError, optional_id, parse_id};

macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

text_enum!(Category {
    Concert => "concert",
    Sports => "sports",
    Theater => "theater",
    Comedy => "comedy",
    Film => "film",
    Family => "family",
    Festival => "festival",
});

text_enum!(EventStatus {
    Draft => "draft",
    Published => "published",
    Cancelled => "cancelled",
});

text_enum!(SectionKind {
    Seated => "seated",
    GeneralAdmission => "general_admission",
});

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub currency_code: String,
    pub amount_minor: i64,
}

impl Money {
    pub fn parse(field: &str, currency_code: &str, amount_minor: i64) -> Result<Self, FieldError> {
        if currency_code.len() != 3 || !currency_code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(FieldError::new(
                format!("{field}.currency_code"),
                "must be an ISO 4217 code such as EUR",
            ));
        }
        if !(0..=limits::PRICE_MAX_MINOR).contains(&amount_minor) {
            return Err(FieldError::new(
                format!("{field}.amount_minor"),
                format!("must be from 0 to {}", limits::PRICE_MAX_MINOR),
            ));
        }
        Ok(Self {
            currency_code: currency_code.to_owned(),
            amount_minor,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatLng {
    pub latitude: f64,
    pub longitude: f64,
}

impl LatLng {
    pub fn parse(field: &str, latitude: f64, longitude: f64) -> Result<Self, FieldError> {
        if !(-90.0..=90.0).contains(&latitude) {
            return Err(FieldError::new(
                format!("{field}.latitude"),
                "must be from -90 to 90",
            ));
        }
        if !(-180.0..=180.0).contains(&longitude) {
            return Err(FieldError::new(
                format!("{field}.longitude"),
                "must be from -180 to 180",
            ));
        }
        Ok(Self {
            latitude,
            longitude,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country_code: String,
}

/// Trims and checks a required text field.
pub fn required_text(field: &str, value: &str, max_chars: usize) -> Result<String, FieldError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    optional_text(field, value, max_chars)
}

pub fn optional_text(field: &str, value: &str, max_chars: usize) -> Result<String, FieldError> {
    let value = value.trim();
    if value.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

pub fn parse_time_zone(field: &str, value: &str) -> Result<String, FieldError> {
    value
        .parse::<chrono_tz::Tz>()
        .map(|tz| tz.name().to_owned())
        .map_err(|_| FieldError::new(field, "must be an IANA time zone such as Europe/London"))
}

// ---------------------------------------------------------------- venues

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionSummary {
    pub id: Uuid,
    pub name: String,
    pub kind: SectionKind,
    pub capacity: u32,
    pub first_seat_index: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Venue {
    pub id: Uuid,
    pub name: String,
    pub address: Address,
    pub location: Option<LatLng>,
    pub time_zone: String,
    pub capacity: u32,
    pub sections: Vec<SectionSummary>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewSeat {
    pub number: String,
    pub x: f32,
    pub y: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewRow {
    pub label: String,
    pub seats: Vec<NewSeat>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewSection {
    pub name: String,
    pub kind: SectionKind,
    /// Seated: the number of seats in its rows. General admission: as given.
    pub capacity: u32,
    pub rows: Vec<NewRow>,
}

/// A validated venue, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVenue {
    pub name: String,
    pub address: Address,
    pub location: Option<LatLng>,
    pub time_zone: String,
    pub sections: Vec<NewSection>,
}

impl NewVenue {
    pub fn capacity(&self) -> u64 {
        self.sections
            .iter()
            .map(|section| u64::from(section.capacity))
            .sum()
    }

    /// Checks the layout as a whole: unique section names, unique row labels
    /// in a section and seat numbers in a row, and the size limits.
    pub fn validate_layout(&self) -> Result<(), FieldError> {
        if self.sections.is_empty() {
            return Err(FieldError::new(
                "sections",
                "a venue needs at least one section",
            ));
        }
        if self.sections.len() > limits::SECTIONS_PER_VENUE {
            return Err(FieldError::new(
                "sections",
                format!("at most {} sections", limits::SECTIONS_PER_VENUE),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (index, section) in self.sections.iter().enumerate() {
            if !names.insert(section.name.to_lowercase()) {
                return Err(FieldError::new(
                    format!("sections[{index}].name"),
                    "section names must be unique",
                ));
            }
            let mut labels = std::collections::HashSet::new();
            for (row_index, row) in section.rows.iter().enumerate() {
                if !labels.insert(row.label.as_str()) {
                    return Err(FieldError::new(
                        format!("sections[{index}].rows[{row_index}].label"),
                        "row labels must be unique within a section",
                    ));
                }
                let mut numbers = std::collections::HashSet::new();
                for (seat_index, seat) in row.seats.iter().enumerate() {
                    if !numbers.insert(seat.number.as_str()) {
                        return Err(FieldError::new(
                            format!(
                                "sections[{index}].rows[{row_index}].seats[{seat_index}].number"
                            ),
                            "seat numbers must be unique within a row",
                        ));
                    }
                }
            }
        }
        if self.capacity() > limits::PLACES_PER_VENUE {
            return Err(FieldError::new(
                "sections",
                format!("a venue holds at most {} places", limits::PLACES_PER_VENUE),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeatPosition {
    pub seat_index: u32,
    pub number: String,
    pub x: f32,
    pub y: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowLayout {
    pub label: String,
    pub seats: Vec<SeatPosition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionLayout {
    pub section: SectionSummary,
    pub rows: Vec<RowLayout>,
}

/// The static, drawable layout of a venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeatLayout {
    pub venue_id: Uuid,
    pub seat_count: u32,
    pub sections: Vec<SectionLayout>,
}

// ------------------------------------------------------------ performers

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Performer {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub genre: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPerformer {
    pub name: String,
    pub description: String,
    pub genre: String,
}

// ---------------------------------------------------------------- events

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTier {
    pub id: Uuid,
    pub name: String,
    pub price: Money,
    pub section_ids: Vec<Uuid>,
    /// Set while inventory prices the tier dynamically: its price now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicPrice>,
}

impl PriceTier {
    /// What a seat of the tier costs now.
    pub fn current_price(&self) -> &Money {
        self.dynamic
            .as_ref()
            .map_or(&self.price, |dynamic| &dynamic.current)
    }
}

/// A dynamically priced tier's price now and its rule, as inventory last
/// published them (`TierPricesChanged`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicPrice {
    pub current: Money,
    pub floor: Money,
    pub ceiling: Money,
    pub step_change_bp: i32,
    pub step_sold_bp: u32,
    pub sold_count: u32,
    pub seat_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPriceTier {
    pub name: String,
    pub price: Money,
    pub section_ids: Vec<Uuid>,
}

/// Checks a set of price tiers on its own: sections appear in at most one
/// tier, every tier has a section, one currency for the whole event.
pub fn validate_price_tiers(tiers: &[NewPriceTier]) -> Result<(), FieldError> {
    if tiers.len() > limits::PRICE_TIERS_PER_EVENT {
        return Err(FieldError::new(
            "event.price_tiers",
            format!("at most {} price tiers", limits::PRICE_TIERS_PER_EVENT),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (index, tier) in tiers.iter().enumerate() {
        if tier.section_ids.is_empty() {
            return Err(FieldError::new(
                format!("event.price_tiers[{index}].section_ids"),
                "a price tier needs at least one section",
            ));
        }
        for section_id in &tier.section_ids {
            if !seen.insert(*section_id) {
                return Err(FieldError::new(
                    format!("event.price_tiers[{index}].section_ids"),
                    format!("section {section_id} is in more than one price tier"),
                ));
            }
        }
        if let Some(first) = tiers.first()
            && first.price.currency_code != tier.price.currency_code
        {
            return Err(FieldError::new(
                format!("event.price_tiers[{index}].price.currency_code"),
                "all price tiers of an event use one currency",
            ));
        }
    }
    Ok(())
}

/// The venue as an event shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventVenue {
    pub id: Uuid,
    pub name: String,
    pub city: String,
    pub country_code: String,
    pub location: Option<LatLng>,
    pub time_zone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub category: Category,
    pub status: EventStatus,
    pub venue: EventVenue,
    pub performers: Vec<Performer>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub on_sale_time: Option<DateTime<Utc>>,
    pub price_tiers: Vec<PriceTier>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub cancel_reason: Option<String>,
}

impl Event {
    /// Buyers see published and cancelled events; drafts only admins.
    pub fn visible_to(&self, is_admin: bool) -> bool {
        is_admin || self.status != EventStatus::Draft
    }
}

/// Stars of the visible reviews: `histogram[0]` counts 1-star reviews.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RatingSummary {
    pub histogram: [u32; 5],
}

impl RatingSummary {
    pub fn count(&self) -> u32 {
        self.histogram.iter().sum()
    }

    pub fn average(&self) -> f64 {
        let count = self.count();
        if count == 0 {
            return 0.0;
        }
        let stars: u64 = self
            .histogram
            .iter()
            .enumerate()
            .map(|(index, n)| (index as u64 + 1) * u64::from(*n))
            .sum();
        stars as f64 / f64::from(count)
    }
}

impl RatingSummary {
    /// From `(stars, how many reviews gave them)` pairs; stars outside 1
    /// to 5 are left out.
    pub fn from_counts(counts: impl IntoIterator<Item = (i16, i64)>) -> Self {
        let mut summary = Self::default();
        for (rating, count) in counts {
            if let Some(slot) = usize::try_from(rating - 1)
                .ok()
                .and_then(|index| summary.histogram.get_mut(index))
            {
                *slot = u32::try_from(count).unwrap_or(u32::MAX);
            }
        }
        summary
    }
}

/// When an event happens and goes on sale; checked together because each
/// bound constrains the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub on_sale_time: Option<DateTime<Utc>>,
}

impl Schedule {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.end_time <= self.start_time {
            return Err(FieldError::new(
                "event.end_time",
                "must be after start_time",
            ));
        }
        if self.end_time - self.start_time > chrono::Duration::days(31) {
            return Err(FieldError::new(
                "event.end_time",
                "an event lasts at most 31 days",
            ));
        }
        if let Some(on_sale) = self.on_sale_time
            && on_sale >= self.end_time
        {
            return Err(FieldError::new(
                "event.on_sale_time",
                "must be before end_time",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub title: String,
    pub description: String,
    pub category: Category,
    pub venue_id: Uuid,
    pub performer_ids: Vec<Uuid>,
    pub schedule: Schedule,
    pub price_tiers: Vec<NewPriceTier>,
}

/// The fields an `UpdateEvent` field mask named, each already valid alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub category: Option<Category>,
    pub performer_ids: Option<Vec<Uuid>>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub on_sale_time: Option<Option<DateTime<Utc>>>,
    pub price_tiers: Option<Vec<NewPriceTier>>,
}

impl EventPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The schedule after this patch.
    pub fn schedule_over(&self, current: &Event) -> Schedule {
        Schedule {
            start_time: self.start_time.unwrap_or(current.start_time),
            end_time: self.end_time.unwrap_or(current.end_time),
            on_sale_time: self.on_sale_time.unwrap_or(current.on_sale_time),
        }
    }
}

/// Why a lifecycle change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleError {
    Cancelled,
    NotDraft,
    NoPriceTiers,
}

/// Draft → published. Publishing twice is a no-op.
pub fn check_publish(event: &Event) -> Result<bool, LifecycleError> {
    match event.status {
        EventStatus::Published => Ok(false),
        EventStatus::Cancelled => Err(LifecycleError::Cancelled),
        EventStatus::Draft if event.price_tiers.is_empty() => Err(LifecycleError::NoPriceTiers),
        EventStatus::Draft => Ok(true),
    }
}

/// Draft or published → cancelled. Cancelling twice is a no-op.
pub fn check_cancel(event: &Event) -> bool {
    event.status != EventStatus::Cancelled
}

/// Which changes an event in this state accepts.
pub fn check_patch(event: &Event, patch: &EventPatch) -> Result<(), LifecycleError> {
    if event.status == EventStatus::Cancelled {
        return Err(LifecycleError::Cancelled);
    }
    if patch.price_tiers.is_some() && event.status != EventStatus::Draft {
        return Err(LifecycleError::NotDraft);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(name: &str, currency: &str, sections: &[Uuid]) -> NewPriceTier {
        NewPriceTier {
            name: name.into(),
            price: Money::parse("price", currency, 1000).unwrap(),
            section_ids: sections.to_vec(),
        }
    }

    fn event(status: EventStatus, tiers: usize) -> Event {
        let now = Utc::now();
        Event {
            id: Uuid::new_v4(),
            title: "t".into(),
            description: String::new(),
            category: Category::Concert,
            status,
            venue: EventVenue {
                id: Uuid::new_v4(),
                name: "v".into(),
                city: "c".into(),
                country_code: "GB".into(),
                location: None,
                time_zone: "Europe/London".into(),
            },
            performers: vec![],
            start_time: now,
            end_time: now + chrono::Duration::hours(2),
            on_sale_time: None,
            price_tiers: (0..tiers)
                .map(|_| PriceTier {
                    id: Uuid::new_v4(),
                    name: "a".into(),
                    price: Money::parse("p", "EUR", 1).unwrap(),
                    section_ids: vec![Uuid::new_v4()],
                    dynamic: None,
                })
                .collect(),
            version: 1,
            created_at: now,
            updated_at: now,
            cancel_reason: None,
        }
    }

    #[test]
    fn a_section_belongs_to_one_tier() {
        let section = Uuid::new_v4();
        let err =
            validate_price_tiers(&[tier("a", "EUR", &[section]), tier("b", "EUR", &[section])])
                .unwrap_err();
        assert_eq!(err.field, "event.price_tiers[1].section_ids");
    }

    #[test]
    fn one_currency_per_event() {
        let err = validate_price_tiers(&[
            tier("a", "EUR", &[Uuid::new_v4()]),
            tier("b", "USD", &[Uuid::new_v4()]),
        ])
        .unwrap_err();
        assert_eq!(err.field, "event.price_tiers[1].price.currency_code");
    }

    #[test]
    fn money_rejects_bad_currency_and_negative_amounts() {
        assert!(Money::parse("p", "eur", 1).is_err());
        assert_eq!(
            Money::parse("p", "EUR", -1).unwrap_err().field,
            "p.amount_minor"
        );
    }

    #[test]
    fn schedule_must_run_forward() {
        let now = Utc::now();
        let schedule = Schedule {
            start_time: now,
            end_time: now,
            on_sale_time: None,
        };
        assert_eq!(schedule.validate().unwrap_err().field, "event.end_time");
    }

    #[test]
    fn lifecycle() {
        assert_eq!(check_publish(&event(EventStatus::Draft, 1)), Ok(true));
        assert_eq!(check_publish(&event(EventStatus::Published, 1)), Ok(false));
        assert_eq!(
            check_publish(&event(EventStatus::Draft, 0)),
            Err(LifecycleError::NoPriceTiers)
        );
        assert_eq!(
            check_publish(&event(EventStatus::Cancelled, 1)),
            Err(LifecycleError::Cancelled)
        );
        let tiers_patch = EventPatch {
            price_tiers: Some(vec![]),
            ..EventPatch::default()
        };
        assert_eq!(
            check_patch(&event(EventStatus::Published, 1), &tiers_patch),
            Err(LifecycleError::NotDraft)
        );
        assert_eq!(
            check_patch(&event(EventStatus::Cancelled, 1), &EventPatch::default()),
            Err(LifecycleError::Cancelled)
        );
        assert!(!event(EventStatus::Draft, 1).visible_to(false));
        assert!(event(EventStatus::Draft, 1).visible_to(true));
    }

    #[test]
    fn duplicate_section_names_are_refused() {
        let section = |name: &str| NewSection {
            name: name.into(),
            kind: SectionKind::GeneralAdmission,
            capacity: 10,
            rows: vec![],
        };
        let venue = NewVenue {
            name: "v".into(),
            address: Address::default(),
            location: None,
            time_zone: "UTC".into(),
            sections: vec![section("Floor"), section("floor")],
        };
        assert_eq!(
            venue.validate_layout().unwrap_err().field,
            "sections[1].name"
        );
    }

    #[test]
    fn text_rules() {
        assert!(required_text("f", "   ", 10).is_err());
        assert!(required_text("f", "abc\u{0}", 10).is_err());
        assert_eq!(required_text("f", "  ok ", 10).unwrap(), "ok");
        assert!(parse_time_zone("tz", "Mars/Olympus").is_err());
        assert_eq!(
            parse_time_zone("tz", "Europe/London").unwrap(),
            "Europe/London"
        );
    }
}
