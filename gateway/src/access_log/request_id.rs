//! `X-Request-Id`: kept when the client sent a usable one, otherwise
//! generated, and forwarded upstream either way. A usable id is text a log
//! line can hold as it is: visible ASCII without `"` or `\`, at most
//! [`MAX_LEN`] bytes.

use std::cell::RefCell;
use std::hash::{BuildHasher, RandomState};

use bytes::Bytes;
use http::header::{Entry, HeaderName, OccupiedEntry};
use http::{HeaderMap, HeaderValue};

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longer client ids are replaced: a log field must stay small.
const MAX_LEN: usize = 128;

/// A request's id: text that needs no escaping in a log line.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(HeaderValue);

impl RequestId {
    pub(crate) fn header(&self) -> &HeaderValue {
        &self.0
    }

    /// The id as text (checked a word at a time: it is ASCII).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }
}

/// The request's id, set in `headers` when absent, unusable or repeated.
/// The header is looked up once (an entry), not once to read and once to set.
pub(crate) fn ensure(headers: &mut HeaderMap) -> RequestId {
    let id = match headers.entry(&X_REQUEST_ID) {
        Entry::Occupied(mut sent) => {
            if let Some(copy) = usable(&sent) {
                return RequestId(copy);
            }
            let id = generate();
            sent.insert(id.clone());
            id
        }
        Entry::Vacant(slot) => slot.insert(generate()).clone(),
    };
    RequestId(id)
}

/// A copy of the one id the client sent, if usable: a clone would keep the
/// connection's read buffer.
fn usable(sent: &OccupiedEntry<'_, HeaderValue>) -> Option<HeaderValue> {
    let mut values = sent.iter();
    let (Some(id), None) = (values.next(), values.next()) else {
        return None;
    };
    let loggable = |b: &u8| (b.is_ascii_graphic() && !matches!(b, b'"' | b'\\')) || *b == b' ';
    if id.is_empty() || id.len() > MAX_LEN || !id.as_bytes().iter().all(loggable) {
        return None;
    }
    HeaderValue::from_bytes(id.as_bytes()).ok()
}

/// Ids made at a time into one buffer, which each id then shares.
const IDS_PER_BLOCK: usize = 64;
const ID_LEN: usize = 32;

thread_local! {
    static IDS: RefCell<Ids> = RefCell::new(Ids::new());
}

/// A random 64-bit prefix per thread, then a counter: unique without a
/// random draw or a shared atomic per request. Ids are made a block at a
/// time and handed out as slices of it: an id costs no allocation or copy,
/// and the copy the exchange keeps shares it too.
struct Ids {
    prefix: u64,
    count: u64,
    block: Bytes,
}

impl Ids {
    fn new() -> Ids {
        Ids {
            prefix: RandomState::new().hash_one(std::thread::current().id()),
            count: 0,
            block: Bytes::new(),
        }
    }

    fn next(&mut self) -> Bytes {
        if self.block.is_empty() {
            self.block = self.make_block();
        }
        self.block.split_to(ID_LEN)
    }

    fn make_block(&mut self) -> Bytes {
        let mut prefix = [0u8; ID_LEN / 2];
        let hex = hex::encode_to_slice(self.prefix.to_be_bytes(), &mut prefix);
        debug_assert!(hex.is_ok(), "16 hex digits fit");
        let mut block = vec![0u8; ID_LEN * IDS_PER_BLOCK];
        for id in block.chunks_exact_mut(ID_LEN) {
            let (high, low) = id.split_at_mut(ID_LEN / 2);
            high.copy_from_slice(&prefix);
            let hex = hex::encode_to_slice(self.count.to_be_bytes(), low);
            debug_assert!(hex.is_ok(), "16 hex digits fit");
            self.count = self.count.wrapping_add(1);
        }
        Bytes::from(block)
    }
}

fn generate() -> HeaderValue {
    let id = IDS.with(|ids| ids.borrow_mut().next());
    HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sent_id_and_generates_unique_ones() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("abc 1"));
        assert_eq!(ensure(&mut headers).as_str(), "abc 1");
        for unloggable in ["a\"b", "a\\b", "a\tb", ""] {
            let mut headers = HeaderMap::new();
            headers.insert(&X_REQUEST_ID, HeaderValue::from_str(unloggable).unwrap());
            let id = ensure(&mut headers);
            assert_eq!(id.as_str().len(), 32, "{unloggable:?} replaced");
            assert_eq!(headers.get(&X_REQUEST_ID), Some(id.header()));
        }

        let mut headers = HeaderMap::new();
        let first = ensure(&mut headers).header().clone();
        assert_eq!(headers.get(&X_REQUEST_ID), Some(&first));
        assert_eq!(first.len(), 32);
        let others: Vec<_> = (0..2 * IDS_PER_BLOCK)
            .map(|_| ensure(&mut HeaderMap::new()).header().clone())
            .collect();
        assert!(others
            .iter()
            .all(|id| id.len() == 32 && id.to_str().is_ok()));
        let mut unique: Vec<_> = others.iter().chain([&first]).collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 2 * IDS_PER_BLOCK + 1);

        let mut repeated = HeaderMap::new();
        repeated.append(&X_REQUEST_ID, HeaderValue::from_static("a"));
        repeated.append(&X_REQUEST_ID, HeaderValue::from_static("b"));
        let id = ensure(&mut repeated);
        assert_eq!(repeated.get_all(&X_REQUEST_ID).iter().count(), 1);
        assert_eq!(id.as_str().len(), 32);
    }
}
