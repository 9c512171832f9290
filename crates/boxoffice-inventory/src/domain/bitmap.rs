//! Seat bitmaps in Redis's bit order: seat `i` is bit `7 - i % 8` of byte
//! `i / 8` (what `SETBIT`/`GETBIT` use), so bitmaps move between Redis, Rust
//! and clients without conversion.

/// A set of seat indexes as a bitmap; reads past the end are zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeatBitmap {
    bytes: Vec<u8>,
}

impl SeatBitmap {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self { bytes }
    }

    pub fn with_seats(seats: impl IntoIterator<Item = u32>) -> Self {
        let mut bitmap = Self::default();
        for seat in seats {
            bitmap.set(seat);
        }
        bitmap
    }

    pub fn contains(&self, seat: u32) -> bool {
        let byte = (seat / 8) as usize;
        self.bytes
            .get(byte)
            .is_some_and(|value| value & (0x80 >> (seat % 8)) != 0)
    }

    pub fn set(&mut self, seat: u32) {
        let byte = (seat / 8) as usize;
        if self.bytes.len() <= byte {
            self.bytes.resize(byte + 1, 0);
        }
        self.bytes[byte] |= 0x80 >> (seat % 8);
    }

    pub fn clear(&mut self, seat: u32) {
        if let Some(byte) = self.bytes.get_mut((seat / 8) as usize) {
            *byte &= !(0x80 >> (seat % 8));
        }
    }

    /// Seats in either bitmap.
    pub fn union(&self, other: &SeatBitmap) -> SeatBitmap {
        let len = self.bytes.len().max(other.bytes.len());
        let bytes = (0..len)
            .map(|i| {
                self.bytes.get(i).copied().unwrap_or(0) | other.bytes.get(i).copied().unwrap_or(0)
            })
            .collect();
        SeatBitmap { bytes }
    }

    /// How many of the seats `0..seat_count` are set.
    pub fn count_below(&self, seat_count: u32) -> u32 {
        let full_bytes = (seat_count / 8) as usize;
        let mut count: u32 = self
            .bytes
            .iter()
            .take(full_bytes)
            .map(|b| b.count_ones())
            .sum();
        for seat in (full_bytes as u32 * 8)..seat_count {
            count += u32::from(self.contains(seat));
        }
        count
    }

    /// How many of the seats `first..=last` are set (what Redis's
    /// `BITCOUNT key first last BIT` answers).
    pub fn count_range(&self, first: u32, last: u32) -> u32 {
        if last < first {
            return 0;
        }
        let (first_byte, last_byte) = ((first / 8) as usize, (last / 8) as usize);
        if first_byte == last_byte {
            return (first..=last)
                .map(|seat| u32::from(self.contains(seat)))
                .sum();
        }
        let head: u32 = (first..(first_byte as u32 + 1) * 8)
            .map(|seat| u32::from(self.contains(seat)))
            .sum();
        let middle: u32 = self
            .bytes
            .iter()
            .take(last_byte)
            .skip(first_byte + 1)
            .map(|byte| byte.count_ones())
            .sum();
        let tail: u32 = (last_byte as u32 * 8..=last)
            .map(|seat| u32::from(self.contains(seat)))
            .sum();
        head + middle + tail
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_bit_order() {
        // SETBIT k 0 1 and SETBIT k 9 1 leave "\x80\x40".
        let bitmap = SeatBitmap::with_seats([0, 9]);
        assert_eq!(bitmap.as_bytes(), &[0x80, 0x40]);
        assert!(bitmap.contains(9));
        assert!(!bitmap.contains(8));
        assert!(!bitmap.contains(1_000));
        let mut cleared = bitmap.clone();
        cleared.clear(9);
        cleared.clear(1_000);
        assert_eq!(cleared.as_bytes(), &[0x80, 0x00]);
    }

    #[test]
    fn counts_and_unions() {
        let a = SeatBitmap::with_seats([1, 2, 17]);
        let b = SeatBitmap::with_seats([2, 3]);
        let both = a.union(&b);
        assert_eq!(both.count_below(100), 4);
        assert_eq!(both.count_below(3), 2);
    }

    #[test]
    fn counts_ranges_as_bitcount_bit_does() {
        let seats = [0, 5, 7, 8, 15, 16, 30, 31, 32, 70];
        let bitmap = SeatBitmap::with_seats(seats);
        for first in 0..80 {
            for last in first..80 {
                let expected = seats.iter().filter(|s| (first..=last).contains(*s)).count();
                assert_eq!(
                    bitmap.count_range(first, last),
                    expected as u32,
                    "{first}..={last}"
                );
            }
        }
        assert_eq!(bitmap.count_range(5, 4), 0);
    }
}
