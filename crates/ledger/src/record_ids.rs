//! Record ids in an entry, held compactly.
//!
//! A whole-project export names every record it sends: a million ids in
//! one `response` entry. On the line they are an ordinary JSON array of
//! strings; in memory they are one buffer of length-prefixed UTF-8
//! (a few bytes per id) rather than a million separate strings, so the
//! gateway can collect them while an export streams past without its
//! memory growing with anything but the ids' own bytes. Clones share the
//! buffer (an entry kept for a retry costs nothing more).

use std::sync::Arc;

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ordered list of record ids.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct RecordIds {
    /// `(varint length, bytes)*`, shared by clones (copied on a push to a
    /// shared list).
    data: Arc<Vec<u8>>,
    count: usize,
    /// Where the last id starts, for [`RecordIds::last`].
    last: usize,
}

impl RecordIds {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of ids.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends an id.
    pub fn push(&mut self, id: &str) {
        let data = Arc::make_mut(&mut self.data);
        self.last = data.len();
        let mut n = id.len();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                data.push(byte);
                break;
            }
            data.push(byte | 0x80);
        }
        data.extend_from_slice(id.as_bytes());
        self.count += 1;
    }

    /// About how many bytes the ids take as a JSON array (no escapes).
    pub fn json_len_hint(&self) -> usize {
        self.data.len() + 2 * self.count + 2
    }

    /// Appends an id unless it equals the last one (the rows of one record
    /// come together in REDCap's answers).
    pub fn push_distinct(&mut self, id: &str) {
        if self.last() != Some(id) {
            self.push(id);
        }
    }

    /// The last id.
    pub fn last(&self) -> Option<&str> {
        (self.count > 0).then(|| Self::decode(&self.data, self.last).0)
    }

    /// The ids in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            (at < self.data.len()).then(|| {
                let (id, next) = Self::decode(&self.data, at);
                at = next;
                id
            })
        })
    }

    /// The ids as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }

    fn decode(data: &[u8], mut at: usize) -> (&str, usize) {
        let mut n = 0usize;
        let mut shift = 0;
        loop {
            let b = data[at];
            at += 1;
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let id = std::str::from_utf8(&data[at..at + n]).expect("pushed as UTF-8");
        (id, at + n)
    }
}

impl std::fmt::Debug for RecordIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for RecordIds {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut ids = RecordIds::new();
        for id in iter {
            ids.push(id.as_ref());
        }
        ids
    }
}

impl From<Vec<String>> for RecordIds {
    fn from(v: Vec<String>) -> Self {
        v.into_iter().collect()
    }
}

impl<S: AsRef<str>> PartialEq<[S]> for RecordIds {
    fn eq(&self, other: &[S]) -> bool {
        self.count == other.len() && self.iter().zip(other).all(|(a, b)| a == b.as_ref())
    }
}

impl<S: AsRef<str>, const N: usize> PartialEq<[S; N]> for RecordIds {
    fn eq(&self, other: &[S; N]) -> bool {
        self == &other[..]
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for RecordIds {
    fn eq(&self, other: &Vec<S>) -> bool {
        self == &other[..]
    }
}

impl Serialize for RecordIds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.count))?;
        for id in self.iter() {
            seq.serialize_element(id)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for RecordIds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ids;
        impl<'de> Visitor<'de> for Ids {
            type Value = RecordIds;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of record ids")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RecordIds, A::Error> {
                let mut ids = RecordIds::new();
                while let Some(id) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    ids.push(&id);
                }
                Ok(ids)
            }
        }
        d.deserialize_seq(Ids)
    }
}

/// Whether the client received a streamed answer whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Every byte REDCap sent reached the client.
    Complete,
    /// The client went away before the end: it received `body_bytes` at
    /// most (the ids are those seen up to then).
    ClientDisconnected,
    /// REDCap's answer broke off; the client received a truncated body.
    UpstreamFailed,
    /// The gateway withheld the answer (the DAG guard): the client received
    /// none of it.
    Withheld,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_json_in_order() {
        let long = "x".repeat(300);
        let ids: RecordIds = ["1", "", "a b", "é", long.as_str(), "1"]
            .into_iter()
            .collect();
        assert_eq!(ids.len(), 6);
        assert_eq!(ids.last(), Some("1"));
        let json = serde_json::to_string(&ids).unwrap();
        assert_eq!(json, format!(r#"["1","","a b","é","{long}","1"]"#));
        let back: RecordIds = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ids);
        assert_eq!(back, ["1", "", "a b", "é", long.as_str(), "1"]);
        let escaped: RecordIds = serde_json::from_str(r#"["a\"b","\u00e9"]"#).unwrap();
        assert_eq!(escaped, ["a\"b", "é"]);
    }

    #[test]
    fn distinct_pushes_skip_only_a_repeat_of_the_last() {
        let mut ids = RecordIds::new();
        for id in ["1", "1", "2", "2", "2", "1", "3"] {
            ids.push_distinct(id);
        }
        assert_eq!(ids, ["1", "2", "1", "3"]);
    }

    #[test]
    fn a_million_ids_take_their_bytes_not_a_string_each() {
        let mut ids = RecordIds::new();
        for i in 0..1_000_000u32 {
            ids.push(&i.to_string());
        }
        assert_eq!(ids.len(), 1_000_000);
        assert!(ids.data.len() < 8_000_000, "{}", ids.data.len());
        assert_eq!(ids.iter().nth(999_999), Some("999999"));
    }
}
