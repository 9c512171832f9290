//! `SearchEventsRequest` on the wire read into a `SearchQuery`, every field
//! checked, and the page tokens that tie each page to the search it belongs
//! to.

use base64::Engine as _;
use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_search::query::MAX_OFFSET;
use boxoffice_search::{GeoPoint, GeoRadius, SearchFilters, SearchQuery, SearchSort};
use chrono::{DateTime, Utc};

use crate::domain::{Category, FieldError, LatLng, optional_text, parse_id};

/// Longest query text accepted, in characters.
pub(crate) const QUERY_MAX_CHARS: usize = 200;
pub(crate) const DEFAULT_PAGE_SIZE: usize = 20;
pub(crate) const MAX_PAGE_SIZE: usize = 100;
/// Largest radius accepted: half the Earth's circumference.
pub(crate) const MAX_RADIUS_KM: f64 = 20_000.0;
/// Ratings are 1 to 5 stars.
pub(crate) const RATING_RANGE: std::ops::RangeInclusive<f64> = 1.0..=5.0;

/// A `SearchEventsRequest` after parsing: every field valid.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedSearch {
    pub query: SearchQuery,
    /// Ties page tokens to the request they were issued for.
    pub fingerprint: u64,
}

fn timestamp(field: &str, time: &prost_types::Timestamp) -> Result<DateTime<Utc>, FieldError> {
    if !(0..1_000_000_000).contains(&time.nanos) {
        return Err(FieldError::new(field, "nanos out of range"));
    }
    DateTime::from_timestamp(time.seconds, time.nanos as u32)
        .filter(|t| (2000..=2200).contains(&chrono::Datelike::year(t)))
        .ok_or_else(|| FieldError::new(field, "must be between the years 2000 and 2200"))
}

fn optional_uuid(field: &str, value: &str) -> Result<Option<String>, FieldError> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse_id(field, value).map(|id| Some(id.to_string()))
    }
}

fn category(value: i32) -> Result<Option<Category>, FieldError> {
    let parsed = pb::Category::try_from(value)
        .map_err(|_| FieldError::new("category", format!("{value} is not a known value")))?;
    Ok(match parsed {
        pb::Category::Unspecified => None,
        pb::Category::Concert => Some(Category::Concert),
        pb::Category::Sports => Some(Category::Sports),
        pb::Category::Theater => Some(Category::Theater),
        pb::Category::Comedy => Some(Category::Comedy),
        pb::Category::Film => Some(Category::Film),
        pb::Category::Family => Some(Category::Family),
        pb::Category::Festival => Some(Category::Festival),
    })
}

/// FNV-1a, stable across processes and versions (unlike `DefaultHasher`).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn encode_page_token(offset: usize, fingerprint: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("s1.{offset}.{fingerprint:x}"))
}

fn decode_page_token(token: &str, fingerprint: u64) -> Result<usize, FieldError> {
    let refused = || FieldError::new("page_token", "is not a token this service issued");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| refused())?;
    let raw = String::from_utf8(raw).map_err(|_| refused())?;
    let mut parts = raw.split('.');
    let (Some("s1"), Some(offset), Some(issued_for), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused());
    };
    let offset: usize = offset.parse().map_err(|_| refused())?;
    let issued_for = u64::from_str_radix(issued_for, 16).map_err(|_| refused())?;
    if issued_for != fingerprint {
        return Err(FieldError::new(
            "page_token",
            "was issued for a different search; keep every other field unchanged while paging",
        ));
    }
    if offset > MAX_OFFSET {
        return Err(refused());
    }
    Ok(offset)
}

/// Parses and checks a request; `now` decides which events have ended.
pub(crate) fn parse_search_request(
    request: &pb::SearchEventsRequest,
    now: DateTime<Utc>,
) -> Result<ParsedSearch, FieldError> {
    let text = request.query.trim();
    if text.chars().count() > QUERY_MAX_CHARS {
        return Err(FieldError::new(
            "query",
            format!("must be at most {QUERY_MAX_CHARS} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(
            "query",
            "must not contain control characters",
        ));
    }
    let limit = match request.page_size {
        0 => DEFAULT_PAGE_SIZE,
        size if size < 0 => return Err(FieldError::new("page_size", "must not be negative")),
        size if size as usize > MAX_PAGE_SIZE => {
            return Err(FieldError::new(
                "page_size",
                format!("must be at most {MAX_PAGE_SIZE}"),
            ));
        }
        size => size as usize,
    };
    let start_after = request
        .start_after
        .as_ref()
        .map(|t| timestamp("start_after", t))
        .transpose()?;
    let start_before = request
        .start_before
        .as_ref()
        .map(|t| timestamp("start_before", t))
        .transpose()?;
    if let (Some(after), Some(before)) = (start_after, start_before)
        && before <= after
    {
        return Err(FieldError::new("start_before", "must be after start_after"));
    }
    let city = optional_text("city", &request.city, crate::domain::limits::NAME_MAX_CHARS)?;
    let category = category(request.category)?;
    let performer_id = optional_uuid("performer_id", &request.performer_id)?;
    let venue_id = optional_uuid("venue_id", &request.venue_id)?;
    let near = request
        .near
        .map(|point| LatLng::parse("near", point.latitude, point.longitude))
        .transpose()?
        .map(|point| GeoPoint {
            latitude: point.latitude,
            longitude: point.longitude,
        });
    let radius_km = request.radius_km;
    if !radius_km.is_finite() || radius_km < 0.0 {
        return Err(FieldError::new(
            "radius_km",
            "must be a positive number of kilometres",
        ));
    }
    if radius_km > MAX_RADIUS_KM {
        return Err(FieldError::new(
            "radius_km",
            format!("must be at most {MAX_RADIUS_KM} km"),
        ));
    }
    if radius_km > 0.0 && near.is_none() {
        return Err(FieldError::new("near", "is required when radius_km is set"));
    }
    let sort = match pb::SearchSort::try_from(request.sort)
        .map_err(|_| FieldError::new("sort", format!("{} is not a known value", request.sort)))?
    {
        pb::SearchSort::Unspecified | pb::SearchSort::Relevance => SearchSort::Relevance,
        pb::SearchSort::StartTime => SearchSort::StartTime,
        pb::SearchSort::Distance if near.is_none() => {
            return Err(FieldError::new("near", "is required to sort by distance"));
        }
        pb::SearchSort::Distance => SearchSort::Distance,
        pb::SearchSort::Rating => SearchSort::Rating,
    };
    let min_rating = if request.min_rating == 0.0 {
        None
    } else if RATING_RANGE.contains(&request.min_rating) {
        Some(request.min_rating)
    } else {
        return Err(FieldError::new(
            "min_rating",
            "must be 1 to 5 stars (0 for no rating filter)",
        ));
    };
    let within = near
        .filter(|_| radius_km > 0.0)
        .map(|center| GeoRadius { center, radius_km });
    let filters = SearchFilters {
        now: now.timestamp(),
        start_after: start_after.map(|t| t.timestamp()),
        start_before: start_before.map(|t| t.timestamp()),
        city: Some(city).filter(|city| !city.is_empty()),
        category: category.map(|c| c.as_str().to_owned()),
        performer_id,
        venue_id,
        within,
        min_rating,
    };
    // Everything that shapes the result list except the page itself.
    let fingerprint = fnv1a(&format!(
        "{text}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{}\u{0}{:?}",
        filters.start_after,
        filters.start_before,
        filters.city,
        filters.category,
        filters.performer_id,
        filters.venue_id,
        near.map(|p| (p.latitude.to_bits(), p.longitude.to_bits())),
        sort,
        radius_km.to_bits(),
        filters.min_rating.map(f64::to_bits),
    ));
    let offset = match request.page_token.as_str() {
        "" => 0,
        token => decode_page_token(token, fingerprint)?,
    };
    Ok(ParsedSearch {
        query: SearchQuery {
            text: text.to_owned(),
            filters,
            point: near,
            sort,
            offset,
            limit,
            facets: true,
        },
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::SearchEventsRequest {
        pb::SearchEventsRequest {
            query: "taylor".into(),
            ..Default::default()
        }
    }

    fn field(request: pb::SearchEventsRequest) -> String {
        parse_search_request(&request, Utc::now())
            .unwrap_err()
            .field
    }

    #[test]
    fn bad_input_names_the_field() {
        let mut r = request();
        r.page_size = MAX_PAGE_SIZE as i32 + 1;
        assert_eq!(field(r), "page_size");
        let mut r = request();
        r.radius_km = 10.0;
        assert_eq!(field(r), "near");
        let mut r = request();
        r.start_after = Some(prost_types::Timestamp {
            seconds: 1_900_000_000,
            nanos: 0,
        });
        r.start_before = Some(prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        });
        assert_eq!(field(r), "start_before");
        let mut r = request();
        r.query = "a".repeat(QUERY_MAX_CHARS + 1);
        assert_eq!(field(r), "query");
        for rating in [0.5, 5.01, -1.0, f64::NAN, f64::INFINITY] {
            let mut r = request();
            r.min_rating = rating;
            assert_eq!(field(r), "min_rating", "{rating}");
        }
        let mut r = request();
        r.sort = pb::SearchSort::Distance as i32;
        assert_eq!(field(r), "near");
        let mut r = request();
        r.performer_id = "nope".into();
        assert_eq!(field(r), "performer_id");
        let mut r = request();
        r.page_token = "garbage".into();
        assert_eq!(field(r), "page_token");
    }

    #[test]
    fn page_tokens_belong_to_their_search() {
        let parsed = parse_search_request(&request(), Utc::now()).unwrap();
        let token = encode_page_token(20, parsed.fingerprint);
        let mut next = request();
        next.page_token = token.clone();
        next.page_size = 5; // the page size may change between pages
        assert_eq!(
            parse_search_request(&next, Utc::now())
                .unwrap()
                .query
                .offset,
            20
        );
        let mut other = request();
        other.query = "swift".into();
        other.page_token = token;
        assert_eq!(field(other), "page_token");
    }

    #[test]
    fn defaults() {
        let parsed = parse_search_request(&pb::SearchEventsRequest::default(), Utc::now()).unwrap();
        assert_eq!(parsed.query.limit, DEFAULT_PAGE_SIZE);
        assert_eq!(parsed.query.offset, 0);
        assert_eq!(parsed.query.filters.within, None);
        assert_eq!(parsed.query.effective_sort(), SearchSort::StartTime);
    }
}
