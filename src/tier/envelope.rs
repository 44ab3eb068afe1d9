//! The envelope every object of the shared tier is stored in, and its check.
//!
//! An object is `MAGIC`, a little-endian `u32` header length, the header (postcard), then the
//! payload. The header names the object (its key in the store, so an object copied or written
//! under another key is refused), the version of the upstream object it came from when one is
//! known (an ETag), the payload's length and its SHA-256.
//!
//! Invariant: [`open`] returns a payload only when every one of those agrees; anything else
//! (truncated, bit-flipped, another format, another key) is an error saying what disagreed,
//! and the caller treats the object as absent.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first bytes of every object medimg writes to the tier (format 1).
const MAGIC: &[u8; 12] = b"medimg-tier\x01";

/// Longest header accepted: a name, a version and a digest fit in far less.
const MAX_HEADER: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    name: String,
    version: Option<String>,
    len: u64,
    sha256: [u8; 32],
}

/// `payload` wrapped for the store under `name`, with the upstream version it came from.
pub fn seal(name: &str, version: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        name: name.to_string(),
        version: version.map(str::to_string),
        len: payload.len() as u64,
        sha256: Sha256::digest(payload).into(),
    };
    // A struct of strings, an integer and an array always encodes.
    let head = postcard::to_stdvec(&header).unwrap_or_default();
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + head.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    out
}

/// What a checked object holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The upstream version the payload came from, if its publisher knew it.
    pub version: Option<String>,
    /// The payload, checked.
    pub payload: &'a [u8],
}

/// The payload of an object read from the store under `name`, when its envelope checks out;
/// otherwise what is wrong with it.
pub fn open<'a>(name: &str, object: &'a [u8]) -> Result<Opened<'a>, String> {
    let rest = object
        .strip_prefix(MAGIC.as_slice())
        .ok_or("not a medimg object (no envelope)")?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or("truncated before its header")?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > MAX_HEADER || len > rest.len() {
        return Err(format!("a header of {len} bytes in {} bytes", object.len()));
    }
    let (head, payload) = rest.split_at(len);
    let header: Header =
        postcard::from_bytes(head).map_err(|e| format!("an unreadable header ({e})"))?;
    if header.name != name {
        return Err(format!("it says it is {:?}", header.name));
    }
    if header.len != payload.len() as u64 {
        return Err(format!(
            "{} bytes where its header says {}",
            payload.len(),
            header.len
        ));
    }
    let digest: [u8; 32] = Sha256::digest(payload).into();
    if digest != header.sha256 {
        return Err("its bytes do not match their SHA-256".into());
    }
    Ok(Opened {
        version: header.version,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_object_opens_under_its_own_name_only() {
        let sealed = seal("b/x-1-0", Some("\"e1\""), b"hello");
        let opened = open("b/x-1-0", &sealed).unwrap();
        assert_eq!(opened.payload, b"hello");
        assert_eq!(opened.version.as_deref(), Some("\"e1\""));
        assert!(open("b/x-1-1", &sealed).unwrap_err().contains("says it is"));
    }

    #[test]
    fn any_damage_is_refused_with_what_is_wrong() {
        let sealed = seal("k", None, &[7u8; 1000]);
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open("k", &flipped).unwrap_err().contains("SHA-256"));
        assert!(
            open("k", &sealed[..sealed.len() - 1])
                .unwrap_err()
                .contains("header says")
        );
        assert!(open("k", b"<html>").unwrap_err().contains("no envelope"));
        assert!(open("k", &sealed[..14]).unwrap_err().contains("header"));
        // Every truncation and every single-bit flip is refused.
        for cut in 0..sealed.len() {
            assert!(open("k", &sealed[..cut]).is_err(), "cut at {cut}");
        }
        for i in (0..sealed.len()).step_by(7) {
            let mut b = sealed.clone();
            b[i] ^= 0x10;
            assert!(open("k", &b).is_err(), "flip at {i}");
        }
    }
}
