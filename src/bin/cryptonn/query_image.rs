//! The query image of `cryptonn client predict`: a 28x28 grayscale image from a PGM file
//! (binary `P5` or ASCII `P2`, maxval 255) or a raw file of 784 bytes (row-major, MNIST's
//! convention: 0 background, 255 ink).
//!
//! A file that starts with `P5` or `P2` followed by whitespace is read as PGM; any other file
//! must be exactly 784 bytes.

use std::path::Path;

use anyhow::Context;
use cryptonn::nn::data::IMAGE_PIXELS;

/// Side of an MNIST image.
const SIDE: usize = 28;

/// Reads the 784 pixels of `path`; errors name the file.
pub fn read_image(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_image(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The pixels of a PGM or raw image (see the module docs).
pub fn parse_image(bytes: &[u8]) -> Result<Vec<u8>, String> {
    match bytes {
        [b'P', kind @ (b'5' | b'2'), w, ..] if w.is_ascii_whitespace() => {
            parse_pgm(*kind == b'5', &bytes[2..])
        }
        _ if bytes.len() == IMAGE_PIXELS => Ok(bytes.to_vec()),
        _ => Err(format!(
            "not a 28x28 image: neither a PGM file (P5 or P2) nor a raw file of {IMAGE_PIXELS} \
             bytes ({} bytes)",
            bytes.len()
        )),
    }
}

/// A cursor over PGM text: whitespace and `#` comments between tokens.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn skip_space(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if b == b'#' {
                while self.bytes.get(self.pos).is_some_and(|&c| c != b'\n') {
                    self.pos += 1;
                }
            } else if b.is_ascii_whitespace() {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// The next decimal number, or a message naming `what`.
    fn number(&mut self, what: &str) -> Result<u32, String> {
        self.skip_space();
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        let digits = &self.bytes[start..self.pos];
        if digits.is_empty() {
            return Err(match self.bytes.get(self.pos) {
                None => format!("PGM ends before the {what}"),
                Some(b) => format!("PGM: expected the {what}, found byte {b:#04x}"),
            });
        }
        if self
            .bytes
            .get(self.pos)
            .is_some_and(|b| !b.is_ascii_whitespace())
        {
            return Err(format!("PGM: the {what} is not followed by whitespace"));
        }
        std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("PGM: the {what} is out of range"))
    }
}

fn parse_pgm(binary: bool, rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut c = Cursor {
        bytes: rest,
        pos: 0,
    };
    let width = c.number("width")?;
    let height = c.number("height")?;
    let maxval = c.number("maxval")?;
    if (width as usize, height as usize) != (SIDE, SIDE) {
        return Err(format!(
            "the image is {width}x{height}, a query is {SIDE}x{SIDE}"
        ));
    }
    if maxval != 255 {
        return Err(format!("PGM maxval {maxval}: only 255 is supported"));
    }
    if binary {
        // Exactly one whitespace byte after maxval, then the raster.
        let raster = rest.get(c.pos + 1..).unwrap_or_default();
        if raster.len() != IMAGE_PIXELS {
            return Err(format!(
                "P5 raster has {} bytes, expected {IMAGE_PIXELS}",
                raster.len()
            ));
        }
        return Ok(raster.to_vec());
    }
    let mut pixels = Vec::with_capacity(IMAGE_PIXELS);
    for i in 0..IMAGE_PIXELS {
        let v = c.number(&format!("pixel {i}"))?;
        pixels.push(u8::try_from(v).map_err(|_| format!("pixel {i} is {v}, above maxval 255"))?);
    }
    c.skip_space();
    if c.pos != rest.len() {
        return Err(format!(
            "P2: more than {IMAGE_PIXELS} pixels ({} bytes after the last)",
            rest.len() - c.pos
        ));
    }
    Ok(pixels)
}

/// The image as binary PGM (for tests and tools).
#[allow(dead_code)]
pub fn to_pgm(pixels: &[u8]) -> Vec<u8> {
    let mut out = format!("P5\n{SIDE} {SIDE}\n255\n").into_bytes();
    out.extend_from_slice(pixels);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<u8> {
        (0..IMAGE_PIXELS).map(|i| (i * 7 % 256) as u8).collect()
    }

    #[test]
    fn binary_ascii_and_raw_images_read_the_same_pixels() {
        let px = image();
        assert_eq!(parse_image(&to_pgm(&px)).unwrap(), px);
        let mut ascii = String::from("P2\n# made by a test\n28 28 # size\n255\n");
        for row in px.chunks(SIDE) {
            let line: Vec<String> = row.iter().map(u8::to_string).collect();
            ascii.push_str(&line.join(" "));
            ascii.push('\n');
        }
        assert_eq!(parse_image(ascii.as_bytes()).unwrap(), px);
        assert_eq!(parse_image(&px).unwrap(), px);
    }

    #[test]
    fn wrong_sizes_and_headers_are_errors() {
        let px = image();
        let err = |b: &[u8]| parse_image(b).unwrap_err();
        assert!(err(&px[..783]).contains("783 bytes"));
        assert!(err(b"P5\n27 28\n255\n").contains("27x28"));
        assert!(err(b"P5\n28 28\n65535\n").contains("maxval 65535"));
        assert!(err(b"P5\n28 x\n255\n").contains("height"));
        assert!(err(b"P5\n28").contains("ends before the height"));
        assert!(err(b"P5\n28 28 255").contains("0 bytes"));
        let mut short = to_pgm(&px);
        short.pop();
        assert!(err(&short).contains("783 bytes"));
        let mut long = to_pgm(&px);
        long.push(0);
        assert!(err(&long).contains("785 bytes"));
        assert!(err(b"P2 28 28 255 1 2 300").contains("pixel 2 is 300"));
        assert!(err(b"P2 28 28 255 1 2").contains("ends before the pixel 2"));
        assert!(err(b"P6\n28 28\n255\n").contains("neither"));
        assert!(err(b"P99999999999 28 28 255").contains("neither"));
        assert!(err(b"P5 99999999999 28 255").contains("out of range"));
    }
}
