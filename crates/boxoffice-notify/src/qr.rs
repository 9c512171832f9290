//! QR images of ticket codes as PNG: the `qrcode` encoder's module matrix,
//! scaled up with a quiet zone, written as an 8-bit greyscale PNG (zlib
//! from `flate2`, chunk CRCs from `crc32fast`).

use std::io::Write as _;

use anyhow::Context as _;
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module: a phone camera reads 4 px modules from a screen.
const SCALE: usize = 4;
/// The blank border the QR standard asks for, in modules.
const QUIET_ZONE: usize = 4;

/// A PNG image of `text` as a QR code (error correction level M).
pub fn png(text: &str) -> anyhow::Result<Vec<u8>> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .context("encoding a QR code")?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * SCALE;
    // Every pixel row of a module row is the same: draw it once, repeat it.
    let mut raw = Vec::with_capacity(side * (side + 1));
    let mut row = vec![255u8; side + 1];
    row[0] = 0; // filter: none
    for module_y in 0..modules + 2 * QUIET_ZONE {
        row[1..].fill(255);
        if let Some(y) = module_y.checked_sub(QUIET_ZONE).filter(|y| *y < modules) {
            for x in 0..modules {
                if colors[y * modules + x] == Color::Dark {
                    let start = 1 + (x + QUIET_ZONE) * SCALE;
                    row[start..start + SCALE].fill(0);
                }
            }
        }
        for _ in 0..SCALE {
            raw.extend_from_slice(&row);
        }
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&raw).context("compressing a QR image")?;
    let compressed = encoder.finish().context("compressing a QR image")?;
    let side = u32::try_from(side).context("a QR image this large")?;
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&side.to_be_bytes());
    header.extend_from_slice(&side.to_be_bytes());
    // Bit depth 8, greyscale, deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &header)?;
    chunk(&mut png, b"IDAT", &compressed)?;
    chunk(&mut png, b"IEND", &[])?;
    Ok(png)
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
        // The pixels: the quiet zone is white, the finder pattern's corner
        // (module 0,0) black, scaled SCALE times.
        let data_length = u32::from_be_bytes(image[33..37].try_into().expect("4 bytes")) as usize;
        assert_eq!(&image[37..41], b"IDAT");
        let mut pixels = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::ZlibDecoder::new(&image[41..41 + data_length]),
            &mut pixels,
        )
        .expect("inflates");
        let stride = width as usize + 1;
        assert_eq!(pixels.len(), stride * height as usize);
        let pixel = |x: usize, y: usize| pixels[y * stride + 1 + x];
        assert_eq!(pixel(0, 0), 255);
        let corner = QUIET_ZONE * SCALE;
        assert_eq!(pixel(corner, corner), 0);
        assert_eq!(pixel(corner + SCALE - 1, corner + SCALE - 1), 0);
        assert_eq!(pixel(corner - 1, corner), 255);
        // The same code always draws the same image.
        assert_eq!(png(&code).expect("encodes"), image);
    }
}
