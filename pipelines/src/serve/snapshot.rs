//! JPEG encoding of a stream's latest frame for `GET /api/streams/{name}/snapshot.jpg`,
//! with the pure-Rust `jpeg-encoder` crate (no GStreamer pipeline per request). The frame
//! is the model's input as the stream last delivered it (square, at the model's size).

use super::control::RgbFrame;
use crate::{PipelineError, Result};

/// Encode a packed RGB frame as a baseline JPEG of `quality` (1-100).
pub fn encode_jpeg(frame: &RgbFrame, quality: u8) -> Result<Vec<u8>> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    if w == 0 || h == 0 || frame.data.len() != w * h * 3 {
        return Err(PipelineError::Internal(format!(
            "snapshot: {} bytes do not make a {w}x{h} RGB frame",
            frame.data.len()
        )));
    }
    let mut out = Vec::with_capacity(w * h / 4 + 1024);
    jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
        .encode(
            &frame.data,
            frame.width,
            frame.height,
            jpeg_encoder::ColorType::Rgb,
        )
        .map_err(|e| PipelineError::Internal(format!("snapshot: JPEG encoding failed: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_frame() {
        let frame = RgbFrame {
            width: 8,
            height: 4,
            data: (0..8 * 4 * 3).map(|i| i as u8).collect(),
        };
        let jpeg = encode_jpeg(&frame, 80).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9]);
        let bad = RgbFrame {
            width: 8,
            height: 4,
            data: vec![0; 5],
        };
        assert!(encode_jpeg(&bad, 80).is_err());
    }
}
