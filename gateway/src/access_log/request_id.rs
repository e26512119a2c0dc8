//! `X-Request-Id`: kept when the client sent a usable one, otherwise
//! generated, and forwarded upstream either way.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

use http::header::{Entry, HeaderName, OccupiedEntry};
use http::{HeaderMap, HeaderValue};

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longer client ids are replaced: a log field must stay small.
const MAX_LEN: usize = 128;

/// The request's id, set in `headers` when absent, unusable or repeated.
/// The header is looked up once (an entry), not once to read and once to set.
pub(crate) fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    match headers.entry(&X_REQUEST_ID) {
        Entry::Occupied(mut sent) => {
            if let Some(copy) = usable(&sent) {
                return copy;
            }
            let id = generate();
            sent.insert(id.clone());
            id
        }
        Entry::Vacant(slot) => slot.insert(generate()).clone(),
    }
}

/// A copy of the one id the client sent, if usable: a clone would keep the
/// connection's read buffer.
fn usable(sent: &OccupiedEntry<'_, HeaderValue>) -> Option<HeaderValue> {
    let mut values = sent.iter();
    let (Some(id), None) = (values.next(), values.next()) else {
        return None;
    };
    if id.is_empty() || id.len() > MAX_LEN || id.to_str().is_err() {
        return None;
    }
    HeaderValue::from_bytes(id.as_bytes()).ok()
}

thread_local! {
    /// A random 64-bit prefix per thread, then a counter: unique without a
    /// random draw or a shared atomic per request.
    static NEXT: Cell<(u64, u64)> = Cell::new((RandomState::new().hash_one(std::thread::current().id()), 0));
}

fn generate() -> HeaderValue {
    let (prefix, count) = NEXT.with(|next| {
        let (prefix, count) = next.get();
        next.set((prefix, count.wrapping_add(1)));
        (prefix, count)
    });
    let mut id = [0u8; 32];
    let (high, low) = id.split_at_mut(16);
    let hex = hex::encode_to_slice(prefix.to_be_bytes(), high)
        .and_then(|()| hex::encode_to_slice(count.to_be_bytes(), low));
    hex.ok()
        .and_then(|()| HeaderValue::from_bytes(&id).ok())
        .unwrap_or_else(|| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sent_id_and_generates_unique_ones() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-1"));
        assert_eq!(ensure(&mut headers), "abc-1");

        let mut headers = HeaderMap::new();
        let first = ensure(&mut headers);
        assert_eq!(headers.get(&X_REQUEST_ID), Some(&first));
        assert_eq!(first.len(), 32);
        assert_ne!(ensure(&mut HeaderMap::new()), first);

        let mut repeated = HeaderMap::new();
        repeated.append(&X_REQUEST_ID, HeaderValue::from_static("a"));
        repeated.append(&X_REQUEST_ID, HeaderValue::from_static("b"));
        let id = ensure(&mut repeated);
        assert_eq!(repeated.get_all(&X_REQUEST_ID).iter().count(), 1);
        assert_eq!(id.len(), 32);
    }
}
