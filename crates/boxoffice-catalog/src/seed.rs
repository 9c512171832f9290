//! Demo data for `boxoffice up` and `boxoffice seed`: real-looking venues (an
//! arena of over 15,000 seats, a theatre, an amphitheatre, a cinema and a
//! standing-only club), about fifty performers and a year of events in
//! several cities. Generated from a fixed seed, so every demo looks the same.

use anyhow::Context as _;
use chrono::{DateTime, Duration, DurationRound as _, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use uuid::Uuid;

use crate::domain::{
    Address, Category, LatLng, Money, NewEvent, NewPerformer, NewPriceTier, NewRow, NewSeat,
    NewSection, NewVenue, Schedule, SectionKind, Venue,
};
use crate::error::CatalogError;
use crate::store::CatalogStore;

/// What seeding produced.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedReport {
    pub venues: usize,
    pub performers: usize,
    pub events: usize,
    pub seats: u64,
    /// Reviews of past shows (what ratings are made of).
    pub reviews: usize,
}

/// Seeds only an empty catalog; returns `None` when data already exists.
pub async fn seed_if_empty(
    store: &CatalogStore,
    event_count: usize,
) -> anyhow::Result<Option<SeedReport>> {
    let client = store.pool().get().await.context("connecting")?;
    let existing: i64 = client
        .query_one("SELECT count(*) FROM catalog.venues", &[])
        .await
        .context("counting venues")?
        .get(0);
    drop(client);
    if existing > 0 {
        return Ok(None);
    }
    seed(store, event_count).await.map(Some)
}

pub async fn seed(store: &CatalogStore, event_count: usize) -> anyhow::Result<SeedReport> {
    let mut rng = StdRng::seed_from_u64(0x0b0c_5eed);
    let mut report = SeedReport::default();

    let venues = [
        store.create_venue(&arena()).await.map_err(anyhow_from)?,
        store.create_venue(&theatre()).await.map_err(anyhow_from)?,
        store
            .create_venue(&amphitheatre())
            .await
            .map_err(anyhow_from)?,
        store.create_venue(&cinema()).await.map_err(anyhow_from)?,
        store.create_venue(&club()).await.map_err(anyhow_from)?,
    ];
    report.venues = venues.len();
    report.seats = venues.iter().map(|v| u64::from(v.capacity)).sum();

    let mut performers = Vec::new();
    for (name, genre, category) in PERFORMERS {
        let performer = store
            .create_performer(&NewPerformer {
                name: (*name).to_owned(),
                description: format!("{name} — {genre}."),
                genre: (*genre).to_owned(),
            })
            .await
            .map_err(anyhow_from)?;
        performers.push((performer.id, *category, *name));
    }
    report.performers = performers.len();

    let now = Utc::now()
        .duration_trunc(Duration::hours(1))
        .unwrap_or_else(|_| Utc::now());
    // Before the events to come, so each is published with its performers'
    // rating.
    report.reviews = past_shows_with_reviews(store, &venues, &performers, now).await?;
    for index in 0..event_count {
        let venue = &venues[index % venues.len()];
        let categories = venue_categories(&venue.name);
        let category = *categories.choose(&mut rng).unwrap_or(&Category::Concert);
        let candidates: Vec<&(Uuid, Category, &str)> = performers
            .iter()
            .filter(|(_, c, _)| *c == category)
            .collect();
        let headliner = candidates
            .choose(&mut rng)
            .copied()
            .unwrap_or(&performers[0]);
        let mut performer_ids = vec![headliner.0];
        if category == Category::Concert
            && rng.random_bool(0.5)
            && let Some(support) = candidates.choose(&mut rng)
            && support.0 != headliner.0
        {
            performer_ids.push(support.0);
        }
        let days_ahead = 1 + (index as i64 * 365 / event_count.max(1) as i64);
        let start_time: DateTime<Utc> =
            now + Duration::days(days_ahead) + Duration::hours(rng.random_range(0..6));
        let title = match category {
            Category::Sports => headliner.2.to_owned(),
            Category::Film => format!("{} — Screening", headliner.2),
            _ => format!(
                "{} — {}",
                headliner.2,
                TOUR_NAMES.choose(&mut rng).unwrap_or(&"Live")
            ),
        };
        let event = store
            .create_event(&NewEvent {
                title,
                description: format!("{} at {}, {}.", headliner.2, venue.name, venue.address.city),
                category,
                venue_id: venue.id,
                performer_ids,
                schedule: Schedule {
                    start_time,
                    end_time: start_time + Duration::hours(3),
                    on_sale_time: Some(now - Duration::days(1)),
                },
                price_tiers: price_tiers(venue, &mut rng),
            })
            .await
            .map_err(anyhow_from)?;
        // Most events are on sale; a few stay drafts, a few are called off.
        let roll: f64 = rng.random();
        if roll < 0.95 {
            store.publish_event(event.id).await.map_err(anyhow_from)?;
            if roll < 0.01 {
                store
                    .cancel_event(event.id, "called off by the promoter")
                    .await
                    .map_err(anyhow_from)?;
            }
        }
        report.events += 1;
    }
    Ok(report)
}

/// What reviewers of the demo's past shows wrote, by stars (1 to 5).
const REVIEW_TEXTS: [&[&str]; 5] = [
    &["Left after three songs.", "Sound was a mess all night."],
    &["Not their best night.", "Too short for the price."],
    &["Fine, nothing special.", "Good band, bad sound."],
    &[
        "Great set, long queue at the bar.",
        "Really good night out.",
    ],
    &[
        "Best show I have seen this year!",
        "Worth every penny.",
        "Incredible from start to finish.",
    ],
];

/// A past show for two performers in three, each with a few reviews, so
/// that the demo has ratings to show (on performers, and in search's rating
/// filter and sort). Reviewers are demo attendees (no accounts); their own
/// random numbers, so the events to come stay as they were.
async fn past_shows_with_reviews(
    store: &CatalogStore,
    venues: &[Venue],
    performers: &[(Uuid, Category, &str)],
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let mut rng = StdRng::seed_from_u64(0x0b0c_5eed_0005);
    let mut reviews = 0;
    for (n, (performer_id, category, name)) in performers.iter().enumerate() {
        if n % 3 == 2 {
            continue;
        }
        // The smaller halls: a past show's tickets are created too.
        let venue = match category {
            Category::Theater | Category::Comedy => &venues[1],
            Category::Film => &venues[3],
            _ => &venues[4],
        };
        let start_time = now - Duration::days(20 + n as i64 * 3);
        let event = store
            .create_event(&NewEvent {
                title: format!("{name} — Last Season"),
                description: format!("{name} at {}, {}.", venue.name, venue.address.city),
                category: *category,
                venue_id: venue.id,
                performer_ids: vec![*performer_id],
                schedule: Schedule {
                    start_time,
                    end_time: start_time + Duration::hours(3),
                    on_sale_time: Some(start_time - Duration::days(60)),
                },
                price_tiers: price_tiers(venue, &mut rng),
            })
            .await
            .map_err(anyhow_from)?;
        store.publish_event(event.id).await.map_err(anyhow_from)?;
        // Each act has a level; its reviewers scatter around it.
        let level: f64 = rng.random_range(2.5..4.9);
        let client = store.pool().get().await.context("connecting")?;
        for _ in 0..rng.random_range(3..12) {
            let stars = (level + rng.random_range(-1.2..1.2))
                .round()
                .clamp(1.0, 5.0) as i16;
            let texts = REVIEW_TEXTS[stars as usize - 1];
            let text = texts.choose(&mut rng).copied().unwrap_or_default();
            let (booking, user) = (Uuid::new_v4(), Uuid::new_v4());
            client
                .execute(
                    "INSERT INTO catalog.review_attendance (booking_id, user_id, event_id, confirmed)
                     VALUES ($1, $2, $3, true)",
                    &[&booking, &user, &event.id],
                )
                .await
                .context("seeding attendance")?;
            client
                .execute(
                    "INSERT INTO catalog.reviews (id, event_id, user_id, rating, body, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6)",
                    &[
                        &Uuid::now_v7(),
                        &event.id,
                        &user,
                        &stars,
                        &text,
                        &(start_time + Duration::hours(rng.random_range(4..72))),
                    ],
                )
                .await
                .context("seeding a review")?;
            reviews += 1;
        }
    }
    Ok(reviews)
}

fn anyhow_from(error: CatalogError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

fn venue_categories(name: &str) -> &'static [Category] {
    match name {
        "Riverside Arena" => &[
            Category::Concert,
            Category::Concert,
            Category::Sports,
            Category::Family,
        ],
        "Lyric Hall Theatre" => &[Category::Theater, Category::Comedy],
        "Lakeside Amphitheater" => &[Category::Concert, Category::Festival],
        "Salle Lumière" => &[Category::Film, Category::Comedy],
        _ => &[Category::Concert],
    }
}

/// Sections nearest the stage cost most; tiers are named the way box offices do.
fn price_tiers(venue: &Venue, rng: &mut StdRng) -> Vec<NewPriceTier> {
    let base: i64 = rng.random_range(25..60) * 100;
    let (currency, names): (&str, [&str; 3]) = match venue.address.country_code.as_str() {
        "US" => ("USD", ["Premium", "Standard", "Value"]),
        "GB" => ("GBP", ["Premium", "Standard", "Upper Tier"]),
        _ => ("EUR", ["Premium", "Standard", "Value"]),
    };
    let mut groups: [Vec<Uuid>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let count = venue.sections.len();
    for (position, section) in venue.sections.iter().enumerate() {
        let group = if count < 3 {
            position.min(2)
        } else {
            position * 3 / count
        };
        groups[group].push(section.id);
    }
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, sections)| !sections.is_empty())
        .map(|(index, section_ids)| NewPriceTier {
            name: names[index].to_owned(),
            price: Money {
                currency_code: currency.to_owned(),
                amount_minor: base * (3 - index as i64),
            },
            section_ids,
        })
        .collect()
}

/// Rows of seats on an arc around the stage at (0, 0), facing it.
fn arc_section(
    name: &str,
    from_degrees: f32,
    to_degrees: f32,
    first_radius: f32,
    rows: usize,
    seats: usize,
) -> NewSection {
    let rows = (0..rows)
        .map(|row| {
            let radius = first_radius + row as f32 * 1.2;
            let label = row_label(row);
            let seats = (0..seats)
                .map(|seat| {
                    let t = (seat as f32 + 0.5) / seats as f32;
                    let angle = (from_degrees + (to_degrees - from_degrees) * t).to_radians();
                    NewSeat {
                        number: (seat + 1).to_string(),
                        x: radius * angle.cos(),
                        y: radius * angle.sin(),
                    }
                })
                .collect();
            NewRow { label, seats }
        })
        .collect();
    NewSection {
        name: name.to_owned(),
        kind: SectionKind::Seated,
        capacity: 0,
        rows,
    }
    .with_capacity()
}

/// Straight rows facing a stage at y = 0.
fn block_section(
    name: &str,
    x_offset: f32,
    y_offset: f32,
    rows: usize,
    seats: usize,
) -> NewSection {
    let rows = (0..rows)
        .map(|row| NewRow {
            label: row_label(row),
            seats: (0..seats)
                .map(|seat| NewSeat {
                    number: (seat + 1).to_string(),
                    x: x_offset + seat as f32,
                    y: y_offset + row as f32,
                })
                .collect(),
        })
        .collect();
    NewSection {
        name: name.to_owned(),
        kind: SectionKind::Seated,
        capacity: 0,
        rows,
    }
    .with_capacity()
}

fn standing(name: &str, capacity: u32) -> NewSection {
    NewSection {
        name: name.to_owned(),
        kind: SectionKind::GeneralAdmission,
        capacity,
        rows: Vec::new(),
    }
}

impl NewSection {
    fn with_capacity(mut self) -> Self {
        self.capacity = self.rows.iter().map(|row| row.seats.len() as u32).sum();
        self
    }
}

/// Row labels as venues print them: A..Z, then AA, BB, ...
fn row_label(row: usize) -> String {
    let letter = (b'A' + (row % 26) as u8) as char;
    std::iter::repeat_n(letter, row / 26 + 1).collect()
}

fn arena() -> NewVenue {
    let mut sections = vec![standing("Floor", 2_000)];
    // Lower bowl: 12 sections of 22 rows x 28 seats; upper bowl: 12 of 26 x 30.
    for index in 0..12 {
        let from = 200.0 + index as f32 * 11.7;
        sections.push(arc_section(
            &format!("Lower {}", 101 + index),
            from,
            from + 11.0,
            30.0,
            22,
            28,
        ));
    }
    for index in 0..12 {
        let from = 200.0 + index as f32 * 11.7;
        sections.push(arc_section(
            &format!("Upper {}", 201 + index),
            from,
            from + 11.0,
            60.0,
            26,
            30,
        ));
    }
    NewVenue {
        name: "Riverside Arena".into(),
        address: Address {
            street: "1 Riverside Way".into(),
            city: "London".into(),
            region: "Greater London".into(),
            postal_code: "E16 1XL".into(),
            country_code: "GB".into(),
        },
        location: Some(LatLng {
            latitude: 51.5030,
            longitude: 0.0032,
        }),
        time_zone: "Europe/London".into(),
        sections,
    }
}

fn theatre() -> NewVenue {
    NewVenue {
        name: "Lyric Hall Theatre".into(),
        address: Address {
            street: "214 West 43rd Street".into(),
            city: "New York".into(),
            region: "NY".into(),
            postal_code: "10036".into(),
            country_code: "US".into(),
        },
        location: Some(LatLng {
            latitude: 40.7572,
            longitude: -73.9877,
        }),
        time_zone: "America/New_York".into(),
        sections: vec![
            block_section("Orchestra", 0.0, 2.0, 24, 32),
            block_section("Mezzanine", 0.0, 30.0, 12, 30),
            block_section("Balcony", 0.0, 45.0, 10, 28),
        ],
    }
}

fn amphitheatre() -> NewVenue {
    let mut sections = Vec::new();
    for index in 0..6 {
        let from = 200.0 + index as f32 * 23.0;
        sections.push(arc_section(
            &format!("Pavilion {}", index + 1),
            from,
            from + 22.0,
            15.0,
            20,
            30,
        ));
    }
    sections.push(standing("Lawn", 5_000));
    NewVenue {
        name: "Lakeside Amphitheater".into(),
        address: Address {
            street: "1600 S Lake Shore Dr".into(),
            city: "Chicago".into(),
            region: "IL".into(),
            postal_code: "60605".into(),
            country_code: "US".into(),
        },
        location: Some(LatLng {
            latitude: 41.8663,
            longitude: -87.6167,
        }),
        time_zone: "America/Chicago".into(),
        sections,
    }
}

fn cinema() -> NewVenue {
    NewVenue {
        name: "Salle Lumière".into(),
        address: Address {
            street: "12 Boulevard des Capucines".into(),
            city: "Paris".into(),
            region: "Île-de-France".into(),
            postal_code: "75009".into(),
            country_code: "FR".into(),
        },
        location: Some(LatLng {
            latitude: 48.8708,
            longitude: 2.3318,
        }),
        time_zone: "Europe/Paris".into(),
        sections: vec![
            block_section("Parterre", 0.0, 4.0, 18, 22),
            block_section("Balcon", 0.0, 25.0, 6, 20),
        ],
    }
}

fn club() -> NewVenue {
    NewVenue {
        name: "Tresor Keller".into(),
        address: Address {
            street: "Köpenicker Straße 70".into(),
            city: "Berlin".into(),
            region: "Berlin".into(),
            postal_code: "10179".into(),
            country_code: "DE".into(),
        },
        location: Some(LatLng {
            latitude: 52.5103,
            longitude: 13.4199,
        }),
        time_zone: "Europe/Berlin".into(),
        sections: vec![standing("Dance Floor", 650)],
    }
}

const TOUR_NAMES: &[&str] = &[
    "World Tour",
    "Live",
    "Greatest Hits Tour",
    "Unplugged",
    "Farewell Tour",
    "Anniversary Show",
    "Summer Nights",
];

const PERFORMERS: &[(&str, &str, Category)] = &[
    ("The Midnight Echoes", "indie rock", Category::Concert),
    ("Aurora Vale", "pop", Category::Concert),
    ("Neon Harbor", "synth-pop", Category::Concert),
    ("Marisol Quintana", "latin pop", Category::Concert),
    ("Iron Meridian", "heavy metal", Category::Concert),
    ("Metalhead Union", "thrash metal", Category::Concert),
    ("Josefine Brandt", "singer-songwriter", Category::Concert),
    ("The Velvet Parade", "britpop", Category::Concert),
    ("Kofi Mensah Quartet", "jazz", Category::Concert),
    ("Saoirse Byrne", "folk", Category::Concert),
    ("Static Bloom", "shoegaze", Category::Concert),
    ("DJ Lumen", "techno", Category::Concert),
    ("Orchestre de la Lune", "classical", Category::Concert),
    ("Hollow Pines", "alt-country", Category::Concert),
    ("Björk Nordahl", "electronic", Category::Concert),
    ("Crimson Tide Brass", "brass band", Category::Concert),
    ("Yuki Tanabe", "j-pop", Category::Concert),
    ("The Copper Kings", "blues rock", Category::Concert),
    ("Amara Okafor", "afrobeats", Category::Concert),
    ("Sons of the Tide", "sea shanties", Category::Concert),
    ("Glass Animals Tribute", "psych-pop", Category::Concert),
    ("Rhiannon Lake", "soul", Category::Concert),
    ("Blue Lantern Festival", "multi-genre", Category::Festival),
    ("Summer Sonic Weekender", "multi-genre", Category::Festival),
    ("Lakeside Jazz Days", "jazz", Category::Festival),
    (
        "London Lions vs Manchester Storm",
        "basketball",
        Category::Sports,
    ),
    (
        "London Lions vs Glasgow Rocks",
        "basketball",
        Category::Sports,
    ),
    (
        "Thames Knights vs Cardiff Devils",
        "ice hockey",
        Category::Sports,
    ),
    ("World Darts Masters", "darts", Category::Sports),
    ("Championship Boxing Night", "boxing", Category::Sports),
    ("Premier Padel Finals", "padel", Category::Sports),
    (
        "Disney on Ice: Frozen Adventures",
        "family show",
        Category::Family,
    ),
    ("Paw Patrol Live", "family show", Category::Family),
    ("Cirque Étoile", "circus", Category::Family),
    ("Hamlet", "Shakespeare", Category::Theater),
    ("The Phantom Returns", "musical", Category::Theater),
    ("Les Misérables", "musical", Category::Theater),
    ("A Streetcar Named Desire", "drama", Category::Theater),
    ("The Lion Dance", "musical", Category::Theater),
    ("Waiting for Godot", "drama", Category::Theater),
    ("Chloé Marchand", "stand-up", Category::Comedy),
    ("Dev Patelson", "stand-up", Category::Comedy),
    ("The Improv Collective", "improv", Category::Comedy),
    ("Marcus O'Reilly", "stand-up", Category::Comedy),
    ("Amélie", "film", Category::Film),
    ("La Haine", "film", Category::Film),
    ("Casablanca", "film", Category::Film),
    ("Spirited Away", "film", Category::Film),
    ("2001: A Space Odyssey", "film", Category::Film),
    ("The Seventh Seal", "film", Category::Film),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arena_is_big_enough() {
        let arena = arena();
        arena.validate_layout().expect("the demo arena is valid");
        assert!(
            arena.capacity() >= 15_000,
            "arena capacity {}",
            arena.capacity()
        );
        for venue in [theatre(), amphitheatre(), cinema(), club()] {
            venue.validate_layout().expect("demo venues are valid");
        }
    }

    #[test]
    fn row_labels_continue_after_z() {
        assert_eq!(row_label(0), "A");
        assert_eq!(row_label(25), "Z");
        assert_eq!(row_label(26), "AA");
    }
}
