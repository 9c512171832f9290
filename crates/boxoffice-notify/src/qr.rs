//! QR images of ticket codes as PNG: the `qrcode` encoder's module matrix,
//! scaled up with a quiet zone, written as a 1-bit greyscale PNG (zlib
//! from `flate2`, chunk CRCs from `crc32fast`).
//!
//! The mask is chosen here, by the standard's penalty rules exactly as
//! `qrcode` scores them (the same mask, so the same image, as
//! `QrCode::with_error_correction_level`; a test holds the two together),
//! over rows and columns of bits: the crate's own scoring reads every
//! module through bounds-checked, coordinate-wrapping lookups and took
//! about 2 ms of CPU a code, most of a confirmation mail's cost. What
//! masking does to a version's modules is worked out once per version
//! ([`Layout`]), so each of the eight masks is a few bit operations a line
//! (about 0.15 ms a code in all, against 0.48 ms with a canvas copy a mask).

use anyhow::Context as _;
use qrcode::canvas::{Canvas, MaskPattern};
use qrcode::{Color, EcLevel, Version};

/// Pixels per module: a phone camera reads 4 px modules from a screen.
const SCALE: usize = 4;
/// The blank border the QR standard asks for, in modules.
const QUIET_ZONE: usize = 4;

/// The masks in the order `qrcode` tries them (the first of equal scores
/// wins, as there).
const MASKS: [MaskPattern; 8] = [
    MaskPattern::Checkerboard,
    MaskPattern::HorizontalLines,
    MaskPattern::VerticalLines,
    MaskPattern::DiagonalLines,
    MaskPattern::LargeCheckerboard,
    MaskPattern::Fields,
    MaskPattern::Diamonds,
    MaskPattern::Meadow,
];

/// The modules of `text` as a QR code at error correction level M, row by
/// row, and the side's length in modules.
fn modules(text: &str) -> anyhow::Result<(Vec<Color>, usize)> {
    let level = EcLevel::M;
    let bits = qrcode::bits::encode_auto(text.as_bytes(), level).context("encoding a QR code")?;
    let version = bits.version();
    let Version::Normal(number) = version else {
        anyhow::bail!("a micro QR code where a normal one was asked for");
    };
    let (data, ec) = qrcode::ec::construct_codewords(&bits.into_bytes(), version, level)
        .context("encoding a QR code")?;
    let mut canvas = Canvas::new(version, level);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&data, &ec);
    let side = usize::try_from(version.width()).context("a QR code this large")?;
    if side > 128 {
        return Ok((best_masked_by_module(&canvas, side)?, side));
    }
    let layout = Layout::of(number, &canvas, side)?;
    // The data and error correction modules, as rows and as columns.
    let mut data_rows = vec![0u128; side];
    let mut data_columns = vec![0u128; side];
    for (y, (row, region)) in data_rows.iter_mut().zip(&layout.region_rows).enumerate() {
        for (x, column) in data_columns.iter_mut().enumerate() {
            if region >> x & 1 == 1 && module(&canvas, x, y).is_dark() {
                *row |= 1 << x;
                *column |= 1 << y;
            }
        }
    }
    let mut best: Option<(u32, Vec<u128>)> = None;
    for mask in &layout.masks {
        let rows: Vec<u128> = (0..side)
            .map(|y| mask.fixed_rows[y] | (data_rows[y] ^ mask.flip_rows[y]))
            .collect();
        let columns: Vec<u128> = (0..side)
            .map(|x| mask.fixed_columns[x] | (data_columns[x] ^ mask.flip_columns[x]))
            .collect();
        let score = penalty_of_lines(&rows, &columns, side);
        if best.as_ref().is_none_or(|(lowest, _)| score < *lowest) {
            best = Some((score, rows));
        }
    }
    let (_, rows) = best.context("no mask")?;
    let colors = rows
        .iter()
        .flat_map(|row| {
            (0..side).map(move |x| {
                if row >> x & 1 == 1 {
                    Color::Dark
                } else {
                    Color::Light
                }
            })
        })
        .collect();
    Ok((colors, side))
}

fn module(canvas: &Canvas, x: usize, y: usize) -> qrcode::canvas::Module {
    // x, y < side <= 177: in range of i16.
    canvas.get(x as i16, y as i16)
}

/// Codes wider than a `u128` (versions above 27, which no ticket code
/// needs): each mask applied to a copy of the canvas and scored module by
/// module.
fn best_masked_by_module(canvas: &Canvas, side: usize) -> anyhow::Result<Vec<Color>> {
    let mut best: Option<(u32, Vec<Color>)> = None;
    for mask in MASKS {
        let mut masked = canvas.clone();
        masked.apply_mask(mask);
        let colors = masked.into_colors();
        let score = penalty_by_module(&colors, side);
        if best.as_ref().is_none_or(|(lowest, _)| score < *lowest) {
            best = Some((score, colors));
        }
    }
    Ok(best.context("no mask")?.1)
}

/// One mask's part of a [`Layout`], as rows and as columns of bits.
struct MaskLayout {
    /// The modules outside the data region (finders, timing, alignment,
    /// version and this mask's format information), dark bits set.
    fixed_rows: Vec<u128>,
    fixed_columns: Vec<u128>,
    /// The data modules this mask inverts.
    flip_rows: Vec<u128>,
    flip_columns: Vec<u128>,
}

/// What masking does to every code of one version, whatever its text:
/// worked out once per version by masking a code's canvas as `qrcode`
/// does, eight times, so a code is then masked and scored eight times with
/// a few bit operations a line instead of eight canvas copies.
struct Layout {
    /// The data and error correction modules (what a mask may invert).
    region_rows: Vec<u128>,
    masks: Vec<MaskLayout>,
}

impl Layout {
    fn of(version: i16, canvas: &Canvas, side: usize) -> anyhow::Result<std::sync::Arc<Self>> {
        static LAYOUTS: std::sync::OnceLock<
            std::sync::Mutex<std::collections::HashMap<i16, std::sync::Arc<Layout>>>,
        > = std::sync::OnceLock::new();
        let layouts = LAYOUTS.get_or_init(Default::default);
        if let Some(layout) = layouts
            .lock()
            .ok()
            .and_then(|known| known.get(&version).cloned())
        {
            return Ok(layout);
        }
        let layout = std::sync::Arc::new(Self::work_out(canvas, side));
        if let Ok(mut known) = layouts.lock() {
            known.insert(version, layout.clone());
        }
        Ok(layout)
    }

    fn work_out(canvas: &Canvas, side: usize) -> Self {
        use qrcode::canvas::Module;
        let mut region_rows = vec![0u128; side];
        for (y, row) in region_rows.iter_mut().enumerate() {
            for x in 0..side {
                if !matches!(module(canvas, x, y), Module::Masked(_)) {
                    *row |= 1 << x;
                }
            }
        }
        let masks = MASKS
            .iter()
            .map(|pattern| {
                let mut masked = canvas.clone();
                masked.apply_mask(*pattern);
                let mut layout = MaskLayout {
                    fixed_rows: vec![0; side],
                    fixed_columns: vec![0; side],
                    flip_rows: vec![0; side],
                    flip_columns: vec![0; side],
                };
                for y in 0..side {
                    for x in 0..side {
                        let dark = module(&masked, x, y).is_dark();
                        let (rows, columns) = if region_rows[y] >> x & 1 == 1 {
                            if dark == module(canvas, x, y).is_dark() {
                                continue;
                            }
                            (&mut layout.flip_rows, &mut layout.flip_columns)
                        } else if dark {
                            (&mut layout.fixed_rows, &mut layout.fixed_columns)
                        } else {
                            continue;
                        };
                        rows[y] |= 1 << x;
                        columns[x] |= 1 << y;
                    }
                }
                layout
            })
            .collect();
        Self { region_rows, masks }
    }
}

/// The standard's mask penalty (rules N1 to N4) as `qrcode` computes it,
/// less its constant offsets, on rows and columns as bits (a ticket code's
/// side is 60 to 70 modules): runs of five or more, finder-like 1:1:3:1:1
/// runs without four light modules on one side, 2x2 blocks, and the
/// distance of the dark share from half.
#[cfg(test)]
fn penalty(colors: &[Color], side: usize) -> u32 {
    if !(8..=128).contains(&side) {
        return penalty_by_module(colors, side);
    }
    let mut rows = vec![0u128; side];
    let mut columns = vec![0u128; side];
    for (y, row) in colors.chunks_exact(side).enumerate() {
        for (x, color) in row.iter().enumerate() {
            let dark = u128::from(*color == Color::Dark);
            rows[y] |= dark << x;
            columns[x] |= dark << y;
        }
    }
    penalty_of_lines(&rows, &columns, side)
}

/// [`penalty`] of a code given as rows and columns of bits (dark set), for
/// sides of 8 to 128 modules.
fn penalty_of_lines(rows: &[u128], columns: &[u128], side: usize) -> u32 {
    let width = |n: usize| {
        if n >= 128 {
            u128::MAX
        } else {
            (1u128 << n) - 1
        }
    };
    let mut score = 0u32;
    for line in rows.iter().chain(columns) {
        let line = *line;
        // N1: a run of n >= 5 costs n - 2. Bit j of `same` is set where
        // module j + 1 is module j's colour, so a run of n is n - 1 set bits
        // in a row, and bit j of `long` where four of those start at j: a
        // run of n >= 5 leaves n - 4 bits in a row there, and costs that
        // plus 2 for each such group.
        let same = !(line ^ (line >> 1)) & width(side - 1);
        let long = same & (same >> 1) & (same >> 2) & (same >> 3);
        score += long.count_ones() + 2 * (long & !(long << 1)).count_ones();
        // N3: dark, light, dark x3, light, dark starting at j, with no dark
        // module within four on one side (or the edge there).
        let mut finders = line
            & !(line >> 1)
            & (line >> 2)
            & (line >> 3)
            & (line >> 4)
            & !(line >> 5)
            & (line >> 6)
            & width(side - 6);
        while finders != 0 {
            let j = finders.trailing_zeros() as usize;
            let from = j.saturating_sub(4);
            let before = (line >> from) & width(j - from) != 0;
            let after = j + 7 < side && (line >> (j + 7)) & width((side - j - 7).min(4)) != 0;
            if !before || !after {
                score += 40;
            }
            finders &= finders - 1;
        }
    }
    // N2: 3 for every 2x2 block of one colour.
    for pair in rows.windows(2) {
        let same_below = !(pair[0] ^ pair[1]);
        let same_right = !(pair[0] ^ (pair[0] >> 1));
        score += 3 * (same_below & (same_below >> 1) & same_right & width(side - 1)).count_ones();
    }
    // N4: how far the dark share is from half, in half-percent steps.
    let dark: usize = rows.iter().map(|row| row.count_ones() as usize).sum();
    let ratio = dark * 200 / (side * side);
    score + ratio.abs_diff(100) as u32
}

/// [`penalty`] module by module, for codes too wide for a `u128` a row
/// (versions above 27, which no ticket code needs): the standard's mask
/// penalty (rules N1 to N4) as `qrcode` computes it,
/// less its constant offsets: runs of five or more in a row or column,
/// 2x2 blocks, finder-like 1:1:3:1:1 runs without four light modules on
/// one side, and the distance of the dark share from half.
fn penalty_by_module(colors: &[Color], side: usize) -> u32 {
    let dark: Vec<bool> = colors.iter().map(|color| *color == Color::Dark).collect();
    let at = |x: usize, y: usize| dark[y * side + x];
    let mut score = 0u32;
    let mut line = vec![false; side];
    for horizontal in [true, false] {
        for i in 0..side {
            for (j, module) in line.iter_mut().enumerate() {
                *module = if horizontal { at(j, i) } else { at(i, j) };
            }
            // N1: a run of n >= 5 costs n - 2.
            let mut run = 1u32;
            for j in 1..=side {
                if j < side && line[j] == line[j - 1] {
                    run += 1;
                } else {
                    if run >= 5 {
                        score += run - 2;
                    }
                    run = 1;
                }
            }
            // N3: dark, light, dark x3, light, dark, with no dark module
            // within four on one side (or the edge there).
            const FINDER: [bool; 7] = [true, false, true, true, true, false, true];
            for j in 0..side.saturating_sub(6) {
                if line[j..j + 7] != FINDER {
                    continue;
                }
                let before = line[j.saturating_sub(4)..j].iter().any(|d| *d);
                let after = line[(j + 7).min(side)..(j + 11).min(side)]
                    .iter()
                    .any(|d| *d);
                if !before || !after {
                    score += 40;
                }
            }
        }
    }
    // N2: 3 for every 2x2 block of one colour.
    for y in 0..side - 1 {
        for x in 0..side - 1 {
            let this = at(x, y);
            if this == at(x + 1, y) && this == at(x, y + 1) && this == at(x + 1, y + 1) {
                score += 3;
            }
        }
    }
    // N4: how far the dark share is from half, in half-percent steps.
    let ratio = dark.iter().filter(|d| **d).count() * 200 / dark.len();
    score + ratio.abs_diff(100) as u32
}

/// A PNG image of `text` as a QR code (error correction level M): one bit
/// a pixel (a QR code is black and white), each module row drawn once and
/// its repeats written with the "Up" filter as rows of zeros, so there is
/// little to compress and the mail carries under 1 KB an image, not ~3.5 KB.
pub fn png(text: &str) -> anyhow::Result<Vec<u8>> {
    let (colors, modules) = self::modules(text)?;
    let side = (modules + 2 * QUIET_ZONE) * SCALE;
    let stride = side.div_ceil(8);
    let mut raw = Vec::with_capacity((stride + 1) * side);
    // A white pixel is a 1 bit (greyscale, bit depth 1); padding bits too.
    let mut row = vec![0xffu8; stride];
    for module_y in 0..modules + 2 * QUIET_ZONE {
        row.fill(0xff);
        if let Some(y) = module_y.checked_sub(QUIET_ZONE).filter(|y| *y < modules) {
            for x in 0..modules {
                if colors[y * modules + x] == Color::Dark {
                    let start = (x + QUIET_ZONE) * SCALE;
                    for pixel in start..start + SCALE {
                        row[pixel / 8] &= !(0x80 >> (pixel % 8));
                    }
                }
            }
        }
        raw.push(0); // filter: none
        raw.extend_from_slice(&row);
        for _ in 1..SCALE {
            raw.push(2); // filter: up (the same as the row above)
            raw.resize(raw.len() + stride, 0);
        }
    }
    let compressed = zlib(&raw)?;
    let side = u32::try_from(side).context("a QR image this large")?;
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&side.to_be_bytes());
    header.extend_from_slice(&side.to_be_bytes());
    // Bit depth 1, greyscale, deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[1, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &header)?;
    chunk(&mut png, b"IDAT", &compressed)?;
    chunk(&mut png, b"IEND", &[])?;
    Ok(png)
}

/// `raw` as a zlib stream, by a compressor kept per thread: a new one
/// allocates and clears ~300 KB of tables, which cost more than
/// compressing a QR image.
fn zlib(raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<flate2::Compress> =
            std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::fast(), true));
    }
    COMPRESSOR.with(|compressor| {
        let mut compressor = compressor.borrow_mut();
        compressor.reset();
        // Deflate's worst case: a few bytes a block more than the input.
        let mut compressed = Vec::with_capacity(raw.len() + raw.len() / 100 + 64);
        let status = compressor
            .compress_vec(raw, &mut compressed, flate2::FlushCompress::Finish)
            .context("compressing a QR image")?;
        anyhow::ensure!(
            status == flate2::Status::StreamEnd,
            "compressing a QR image did not finish"
        );
        Ok(compressed)
    })
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) -> anyhow::Result<()> {
    let length = u32::try_from(data.len()).context("a PNG chunk this large")?;
    png.extend_from_slice(&length.to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    png.extend_from_slice(&crc.finalize().to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_code_becomes_a_square_png() {
        let code = format!(
            "bt2.{}.{}.12.{}.signature",
            "a".repeat(32),
            "b".repeat(32),
            "c".repeat(32)
        );
        let image = png(&code).expect("encodes");
        assert_eq!(&image[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&image[12..16], b"IHDR");
        let width = u32::from_be_bytes(image[16..20].try_into().expect("4 bytes"));
        let height = u32::from_be_bytes(image[20..24].try_into().expect("4 bytes"));
        assert_eq!(width, height);
        assert_eq!(width as usize % SCALE, 0);
        assert!(
            image.ends_with(&[0xae, 0x42, 0x60, 0x82]),
            "IEND's CRC closes the file"
        );
        // The pixels, as an independent decoder reads them: the quiet zone
        // is white, the finder pattern's corner (module 0,0) black, scaled
        // SCALE times.
        let mut decoder = ::png::Decoder::new(std::io::Cursor::new(&image));
        decoder.set_transformations(::png::Transformations::EXPAND);
        let mut reader = decoder.read_info().expect("a PNG");
        let mut pixels = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut pixels).expect("its pixels");
        assert_eq!((frame.width, frame.height), (width, height));
        assert_eq!(frame.color_type, ::png::ColorType::Grayscale);
        let stride = frame.line_size;
        let pixel = |x: usize, y: usize| pixels[y * stride + x];
        assert_eq!(pixel(0, 0), 255);
        let corner = QUIET_ZONE * SCALE;
        assert_eq!(pixel(corner, corner), 0);
        assert_eq!(pixel(corner + SCALE - 1, corner + SCALE - 1), 0);
        assert_eq!(pixel(corner - 1, corner), 255);
        assert_eq!(pixel(corner, corner + SCALE * 7), 255, "below the finder");
        // Every pixel is the module it scales.
        let (colors, modules) = self::modules(&code).expect("encodes");
        for y in 0..height as usize {
            for x in 0..width as usize {
                let (mx, my) = (x / SCALE, y / SCALE);
                let dark = (QUIET_ZONE..QUIET_ZONE + modules).contains(&mx)
                    && (QUIET_ZONE..QUIET_ZONE + modules).contains(&my)
                    && colors[(my - QUIET_ZONE) * modules + mx - QUIET_ZONE] == Color::Dark;
                assert_eq!(pixel(x, y), if dark { 0 } else { 255 }, "pixel {x},{y}");
            }
        }
        assert!(image.len() < 2_000, "{} bytes", image.len());
        // The same code always draws the same image.
        assert_eq!(png(&code).expect("encodes"), image);
    }

    #[test]
    fn bits_and_modules_score_alike() {
        for text in ["a", "bt2.0123456789", &"x".repeat(200), &"Zz9-".repeat(60)] {
            let bits = qrcode::bits::encode_auto(text.as_bytes(), EcLevel::M).expect("bits");
            let version = bits.version();
            let (data, ec) =
                qrcode::ec::construct_codewords(&bits.into_bytes(), version, EcLevel::M)
                    .expect("codewords");
            let mut canvas = Canvas::new(version, EcLevel::M);
            canvas.draw_all_functional_patterns();
            canvas.draw_data(&data, &ec);
            let side = usize::try_from(version.width()).expect("a width");
            for mask in MASKS {
                let mut masked = canvas.clone();
                masked.apply_mask(mask);
                let colors = masked.into_colors();
                assert_eq!(
                    penalty(&colors, side),
                    penalty_by_module(&colors, side),
                    "{mask:?} of {text:?}"
                );
            }
        }
    }

    #[test]
    fn the_mask_is_the_one_qrcode_chooses() {
        // Codes of every length a ticket code takes, and short ones.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for length in (1..40).chain((150..260).step_by(7)) {
            let text: String = (0..length)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
                            [(seed % 65) as usize],
                    )
                })
                .collect();
            let expected = qrcode::QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
                .expect("qrcode encodes it");
            let (colors, side) = modules(&text).expect("encodes");
            assert_eq!(side, expected.width(), "{text}");
            assert_eq!(
                colors,
                expected.to_colors(),
                "the same modules for {text:?}"
            );
        }
    }
}
