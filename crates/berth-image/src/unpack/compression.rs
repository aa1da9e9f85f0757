//! Layer compression: detected from the first bytes, decoded in the streaming pass.

use std::io::{self, BufReader, Read};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
    /// zstd, possibly several frames.
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Bytes buffered between the raw input and the decoder.
const INPUT_BUFFER: usize = 256 << 10;

impl Compression {
    /// Detect from the start of the stream (fewer bytes than a magic number means a plain tar).
    pub fn detect(prefix: &[u8]) -> Self {
        if prefix.starts_with(GZIP_MAGIC) {
            Self::Gzip
        } else if prefix.starts_with(ZSTD_MAGIC) {
            Self::Zstd
        } else {
            Self::None
        }
    }

    /// The OCI layer media type for this compression.
    pub fn media_type(self) -> oci_spec::image::MediaType {
        use oci_spec::image::MediaType;
        match self {
            Self::None => MediaType::ImageLayer,
            Self::Gzip => MediaType::ImageLayerGzip,
            Self::Zstd => MediaType::ImageLayerZstd,
        }
    }
}

/// Read the stream's first bytes, then return a reader of the uncompressed content.
pub fn decoder<'a, R: Read + 'a>(mut raw: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut prefix = [0u8; 4];
    let mut have = 0;
    while have < prefix.len() {
        match raw.read(&mut prefix[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let kind = Compression::detect(&prefix[..have]);
    let buffered = BufReader::with_capacity(INPUT_BUFFER, io::Cursor::new(prefix[..have].to_vec()).chain(raw));
    let reader: Box<dyn Read + 'a> = match kind {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    };
    Ok((kind, reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_detected_from_magic_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(Compression::detect(b"usr/"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }

    #[test]
    fn decoder_reads_short_streams_whole() {
        let (kind, mut r) = decoder(&b"ab"[..]).unwrap();
        assert_eq!(kind, Compression::None);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }
}
