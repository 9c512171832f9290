//! Criterion benchmark of best-available selection on a 20,000-seat map:
//! an empty house, a 70%-taken house, and a nearly sold-out one (the worst
//! case: every row is scanned and few runs fit).

use std::hint::black_box;

use boxoffice_inventory::domain::layout::{SaleRow, SaleSection, TierPrice};
use boxoffice_inventory::domain::{BestAvailableQuery, SaleLayout, SeatBitmap, best_available};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use uuid::Uuid;

const SECTIONS: u32 = 10;
const ROWS: u32 = 40;
const SEATS_PER_ROW: u32 = 50;

/// Ten sections of 40 rows × 50 seats facing a stage at (0, 0).
fn stadium() -> SaleLayout {
    let mut sections = Vec::new();
    let mut next = 0u32;
    for section in 0..SECTIONS {
        let first = next;
        let rows = (0..ROWS)
            .map(|row| {
                let seats: Vec<u32> = (0..SEATS_PER_ROW)
                    .map(|seat| first + row * SEATS_PER_ROW + seat)
                    .collect();
                let distances = (0..SEATS_PER_ROW)
                    .map(|seat| {
                        let x = seat as f32 - SEATS_PER_ROW as f32 / 2.0
                            + (section as f32 - 4.5) * 55.0;
                        let y = 5.0 + row as f32;
                        x.hypot(y)
                    })
                    .collect();
                SaleRow { seats, distances }
            })
            .collect();
        next += ROWS * SEATS_PER_ROW;
        sections.push(SaleSection {
            id: Uuid::from_u128(u128::from(section) + 1),
            general_admission: false,
            first_seat_index: first,
            capacity: ROWS * SEATS_PER_ROW,
            price: Some(TierPrice {
                tier_id: Uuid::from_u128(100 + u128::from(section / 4)),
                amount_minor: 10_000 - i64::from(section) * 500,
            }),
            rows,
        });
    }
    SaleLayout {
        seat_count: next,
        currency_code: "EUR".into(),
        sections,
    }
}

/// Marks about `percent`% of the seats taken, deterministically.
fn taken(seat_count: u32, percent: u64) -> SeatBitmap {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    SeatBitmap::with_seats((0..seat_count).filter(|_| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % 100 < percent
    }))
}

fn bench(c: &mut Criterion) {
    let layout = stadium();
    assert_eq!(layout.seat_count, 20_000);
    let mut group = c.benchmark_group("best_available_20k");
    for percent in [0u64, 70, 97] {
        let taken = taken(layout.seat_count, percent);
        for quantity in [2u32, 4, 8] {
            let query = BestAvailableQuery {
                quantity,
                ..BestAvailableQuery::default()
            };
            group.bench_with_input(
                BenchmarkId::new(format!("{percent}pct_taken"), quantity),
                &query,
                |b, query| {
                    b.iter(|| {
                        best_available(black_box(&layout), black_box(&taken), black_box(query))
                    })
                },
            );
        }
    }
    let taken = taken(layout.seat_count, 70);
    let in_tier = BestAvailableQuery {
        quantity: 4,
        price_tier_id: Some(Uuid::from_u128(101)),
        max_price_minor: Some(8_000),
        ..BestAvailableQuery::default()
    };
    group.bench_function("70pct_taken/tier_and_price_filter/4", |b| {
        b.iter(|| best_available(black_box(&layout), black_box(&taken), black_box(&in_tier)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
