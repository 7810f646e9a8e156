//! Splits an MJPEG byte stream (concatenated JPEGs, as `rpicam-vid --codec mjpeg -o -` writes
//! them) into frames. Each frame is found by walking its marker segments from the SOI
//! ([`models::preprocess::jpeg_extent`]), not by searching for the next `FF D9`: an `FF D9`
//! can sit inside an EXIF thumbnail, and entropy-coded data holds `FF 00` / `FF Dn` pairs.
//! Bytes that are not JPEG data, frames cut short and frames that are not well-formed come out
//! as [`Piece::Skip`] with a reason, so a damaged stream is counted, never fatal.

use std::io::{self, Read};

use models::preprocess::{JPEG_SOI, JpegExtent, jpeg_extent};

/// What the splitter found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// One whole JPEG, SOI to EOI.
    Frame(Vec<u8>),
    /// Bytes that are not a usable frame, and why.
    Skip(String),
}

/// A frame larger than this is taken for garbage (a 4K JPEG at top quality is ~6 MB).
pub const DEFAULT_MAX_FRAME: usize = 32 << 20;

/// Incremental splitter: [`push`](Self::push) bytes in, [`pop`](Self::pop) pieces out.
pub struct MjpegSplitter {
    buf: Vec<u8>,
    /// Non-JPEG bytes discarded since the last piece.
    garbage: usize,
    max_frame: usize,
}

impl Default for MjpegSplitter {
    fn default() -> Self {
        MjpegSplitter::new(DEFAULT_MAX_FRAME)
    }
}

impl MjpegSplitter {
    pub fn new(max_frame: usize) -> Self {
        MjpegSplitter { buf: Vec::new(), garbage: 0, max_frame: max_frame.max(4) }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next piece the buffered bytes hold, or None until more bytes arrive.
    pub fn pop(&mut self) -> Option<Piece> {
        // A frame starts at SOI followed by the FF of its first segment.
        let soi = self.buf.windows(3).position(|w| w[..2] == JPEG_SOI && w[2] == 0xFF);
        let Some(soi) = soi else {
            // Keep the last 2 bytes: they may be the start of the next SOI.
            let junk = self.buf.len().saturating_sub(2);
            self.discard(junk);
            return (self.garbage >= self.max_frame).then(|| self.garbage_piece());
        };
        if soi > 0 {
            self.discard(soi);
        }
        if self.garbage > 0 {
            return Some(self.garbage_piece());
        }
        match jpeg_extent(&self.buf) {
            JpegExtent::Complete(len) => Some(Piece::Frame(self.buf.drain(..len).collect())),
            JpegExtent::Truncated(_) if self.buf.len() <= self.max_frame => None,
            JpegExtent::Truncated(_) => {
                self.buf.drain(..2);
                Some(Piece::Skip(format!(
                    "JPEG frame larger than {} bytes without an end-of-image marker",
                    self.max_frame
                )))
            }
            JpegExtent::Cut(next) => {
                self.buf.drain(..next);
                Some(Piece::Skip(format!("truncated JPEG frame ({next} bytes): the next frame starts before it ended")))
            }
            JpegExtent::Corrupt(why) => {
                // Resynchronise on the next SOI after this one.
                self.buf.drain(..2);
                Some(Piece::Skip(format!("corrupt JPEG frame: {why}")))
            }
        }
    }

    /// At the end of the stream: what is left (a frame cut short, stray bytes) as a skip.
    pub fn finish(&mut self) -> Option<Piece> {
        if let Some(p) = self.pop() {
            return Some(p);
        }
        if self.buf.starts_with(&JPEG_SOI) {
            let n = self.buf.len();
            self.buf.clear();
            return Some(Piece::Skip(format!("truncated JPEG frame: the stream ended {n} bytes into it")));
        }
        let rest = self.buf.len();
        self.discard(rest);
        (self.garbage > 0).then(|| self.garbage_piece())
    }

    /// Reads from `r` until a piece is complete; None once `r` is at its end and every
    /// buffered byte has been accounted for.
    pub fn read_from(&mut self, r: &mut dyn Read) -> io::Result<Option<Piece>> {
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            if let Some(p) = self.pop() {
                return Ok(Some(p));
            }
            match r.read(&mut chunk) {
                Ok(0) => return Ok(self.finish()),
                Ok(n) => self.push(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn discard(&mut self, n: usize) {
        self.buf.drain(..n);
        self.garbage += n;
    }

    fn garbage_piece(&mut self) -> Piece {
        let n = std::mem::take(&mut self.garbage);
        Piece::Skip(format!("{n} bytes of data that is not JPEG between frames"))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// Real JPEG bytes of a fixture-like image (noisy, so the scan data holds FF 00 pairs).
    fn jpeg(w: u32, h: u32, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            image::Rgb([(x * 3) as u8, (y * 9) as u8 ^ s as u8, (s >> 16) as u8])
        });
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg).unwrap();
        out
    }

    fn split_all(bytes: &[u8], read_size: usize) -> Vec<Piece> {
        /// Delivers at most `n` bytes per read, like a pipe.
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = Trickle(bytes, read_size);
        let mut sp = MjpegSplitter::default();
        let mut out = Vec::new();
        for _ in 0..10_000 {
            match sp.read_from(&mut r).unwrap() {
                Some(p) => out.push(p),
                None => return out,
            }
        }
        panic!("splitter did not finish");
    }

    #[test]
    fn concatenated_jpegs_come_out_whole_whatever_the_read_size() {
        let frames = [jpeg(64, 48, 1), jpeg(32, 32, 2), jpeg(80, 60, 3)];
        assert!(frames[0].windows(2).any(|w| w == [0xFF, 0x00]), "scan data with stuffed FF bytes");
        let stream = frames.concat();
        for read_size in [1, 7, 4096, 1 << 20] {
            let pieces = split_all(&stream, read_size);
            let want: Vec<Piece> = frames.iter().cloned().map(Piece::Frame).collect();
            assert_eq!(pieces, want, "read size {read_size}");
        }
    }

    #[test]
    fn an_eoi_inside_an_exif_thumbnail_does_not_split_the_frame() {
        let thumb = jpeg(16, 16, 4);
        let outer = jpeg(64, 64, 5);
        let mut payload = b"Exif\0\0".to_vec();
        payload.extend_from_slice(&thumb);
        let mut framed = vec![0xFF, 0xD8, 0xFF, 0xE1];
        framed.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        framed.extend_from_slice(&payload);
        framed.extend_from_slice(&outer[2..]);
        let stream = [framed.clone(), outer.clone()].concat();
        assert_eq!(split_all(&stream, 1000), [Piece::Frame(framed), Piece::Frame(outer)]);
    }

    #[test]
    fn garbage_and_cut_frames_are_skips_and_good_frames_still_come_out() {
        let (a, b) = (jpeg(64, 48, 6), jpeg(48, 64, 7));
        let mut stream = b"garbage before the first frame".to_vec();
        stream.extend_from_slice(&a);
        stream.extend_from_slice(&b[..b.len() / 2]); // cut short, then the next frame
        stream.extend_from_slice(&a);
        stream.extend_from_slice(&b[..300]); // cut short by the end of the stream
        let pieces = split_all(&stream, 333);
        let kinds: Vec<&str> = pieces
            .iter()
            .map(|p| match p {
                Piece::Frame(f) if *f == a => "a",
                Piece::Frame(_) => "other frame",
                Piece::Skip(why) if why.contains("not JPEG") => "garbage",
                Piece::Skip(why) if why.contains("truncated") => "truncated",
                Piece::Skip(_) => "other skip",
            })
            .collect();
        assert_eq!(kinds, ["garbage", "a", "truncated", "a", "truncated"], "{pieces:?}");
    }

    #[test]
    fn endless_garbage_is_reported_in_bounded_pieces() {
        let mut sp = MjpegSplitter::new(1000);
        let mut skips = 0;
        for i in 0..100u32 {
            sp.push(&[(i % 200) as u8; 100]);
            while let Some(p) = sp.pop() {
                assert!(matches!(p, Piece::Skip(_)));
                skips += 1;
            }
        }
        assert!(sp.buf.len() <= 2 && (9..=10).contains(&skips), "{skips} skips, {} buffered", sp.buf.len());
    }

    #[test]
    fn a_corrupt_frame_is_skipped_and_the_stream_resynchronises() {
        let a = jpeg(40, 40, 8);
        let mut bad = a.clone();
        bad[4..6].copy_from_slice(&[0, 1]); // first segment length 1: impossible
        let stream = [bad, a.clone()].concat();
        let pieces = split_all(&stream, 4096);
        assert!(matches!(&pieces[0], Piece::Skip(w) if w.contains("corrupt")), "{pieces:?}");
        assert_eq!(pieces.last(), Some(&Piece::Frame(a)));
    }
}
