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
    let mut raw = Vec::with_capacity(side * (side + 1));
    for y in 0..side {
        raw.push(0u8); // filter: none
        let module_y = (y / SCALE).checked_sub(QUIET_ZONE);
        for x in 0..side {
            let module_x = (x / SCALE).checked_sub(QUIET_ZONE);
            let dark = match (module_x, module_y) {
                (Some(mx), Some(my)) if mx < modules && my < modules => {
                    colors[my * modules + mx] == Color::Dark
                }
                _ => false,
            };
            raw.push(if dark { 0 } else { 255 });
        }
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
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
        // The same code always draws the same image.
        assert_eq!(png(&code).expect("encodes"), image);
    }
}
