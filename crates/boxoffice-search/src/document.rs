//! What the search index holds for one event: the searchable text, the
//! filterable and sortable values, and an opaque payload handed back with
//! every hit (the catalog keeps the serialized event there, so a search is
//! answered without touching PostgreSQL).

use serde::{Deserialize, Serialize};

/// The only status buyers ever find.
pub(crate) const STATUS_PUBLISHED: &str = "published";

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub latitude: f64,
    pub longitude: f64,
}

/// Great-circle distance in kilometres (mean Earth radius 6371.0088 km, the
/// one Meilisearch uses too, so both engines agree on radius edges).
pub fn haversine_km(a: GeoPoint, b: GeoPoint) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6_371.008_8;
    let (lat1, lat2) = (a.latitude.to_radians(), b.latitude.to_radians());
    let d_lat = lat2 - lat1;
    let d_lng = (b.longitude - a.longitude).to_radians();
    let h = (d_lat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (d_lng / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().clamp(0.0, 1.0).asin()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchDocument {
    /// The event id (a UUID): letters, digits and dashes only.
    pub id: String,
    /// Increases with every change of the event; writes never go back.
    pub version: i64,
    /// `draft`, `published` or `cancelled`.
    pub status: String,
    pub title: String,
    pub description: String,
    /// Lowercase, e.g. `concert`.
    pub category: String,
    /// Names, headliner first.
    pub performers: Vec<String>,
    pub performer_ids: Vec<String>,
    pub venue_id: String,
    pub venue_name: String,
    pub city: String,
    pub country_code: String,
    /// Unix seconds.
    pub start_time: i64,
    /// Unix seconds; the event disappears from search once this has passed.
    pub end_time: i64,
    pub location: Option<GeoPoint>,
    /// Cheapest and dearest price tier, in minor units of `currency_code`.
    pub price_min_minor: Option<i64>,
    pub price_max_minor: Option<i64>,
    pub currency_code: String,
    /// Mean stars of the reviews of the performers' events (1 to 5), 0
    /// while there are none; what the rating filter and sort read.
    #[serde(default)]
    pub rating: f64,
    /// How many reviews `rating` averages.
    #[serde(default)]
    pub rating_count: u32,
    /// Returned untouched with every hit.
    pub payload: String,
}

impl SearchDocument {
    /// Whether a buyer may find this document at `now` (unix seconds).
    pub fn is_buyable_at(&self, now: i64) -> bool {
        self.status == STATUS_PUBLISHED && self.end_time > now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_known_distances() {
        let london = GeoPoint {
            latitude: 51.5074,
            longitude: -0.1278,
        };
        let paris = GeoPoint {
            latitude: 48.8566,
            longitude: 2.3522,
        };
        let km = haversine_km(london, paris);
        assert!(
            (km - 343.5).abs() < 2.0,
            "london-paris is about 344 km, got {km}"
        );
        assert_eq!(haversine_km(london, london), 0.0);
    }
}
