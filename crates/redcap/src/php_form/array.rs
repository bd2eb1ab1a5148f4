//! PHP arrays as `$_POST` and `$_FILES` hold them: ordered maps keyed by
//! integers or byte strings, with PHP's "next free index" for `a[]`.

use std::hash::{Hash, Hasher};

use indexmap::{Equivalent, IndexMap};

/// A PHP array key. PHP turns a string that is a canonical decimal integer
/// (no sign but `-`, no leading zero, within `i64`) into an integer key, so
/// `a[5]` and `a[05]` are different keys but `a[5]` and `a[+5]`… are not
/// the same either (`+5` stays a string).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// An integer key.
    Int(i64),
    /// A string key (any bytes but NUL).
    Str(Vec<u8>),
}

/// A [`Key`] borrowed: what a lookup by name needs, without copying the
/// name. Hashes as the key it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRef<'a> {
    /// An integer key.
    Int(i64),
    /// A string key.
    Str(&'a [u8]),
}

impl<'a> KeyRef<'a> {
    /// The key PHP makes of these bytes.
    pub fn from_bytes(b: &'a [u8]) -> KeyRef<'a> {
        match numeric_key(b) {
            Some(i) => KeyRef::Int(i),
            None => KeyRef::Str(b),
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self == key.as_ref()
    }
}

impl Key {
    /// The borrowed form.
    pub fn as_ref(&self) -> KeyRef<'_> {
        match self {
            Key::Int(i) => KeyRef::Int(*i),
            Key::Str(s) => KeyRef::Str(s),
        }
    }

    /// The key PHP makes of these bytes.
    pub fn from_bytes(b: &[u8]) -> Key {
        match numeric_key(b) {
            Some(i) => Key::Int(i),
            None => Key::Str(b.to_vec()),
        }
    }

    /// The key's bytes as PHP prints it (integers in decimal).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Key::Int(i) => i.to_string().into_bytes(),
            Key::Str(s) => s.clone(),
        }
    }

    /// The key as text (lossy for bytes that are not UTF-8).
    pub fn to_text(&self) -> String {
        match self {
            Key::Int(i) => i.to_string(),
            Key::Str(s) => String::from_utf8_lossy(s).into_owned(),
        }
    }

    /// Whether this is the string key `name`.
    pub fn is(&self, name: &str) -> bool {
        matches!(self, Key::Str(s) if s == name.as_bytes())
    }
}

/// PHP's `ZEND_HANDLE_NUMERIC_STR`: `-?(0|[1-9][0-9]*)` within `i64`, but
/// not `-0`.
fn numeric_key(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && b.len() > 1 {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A value in `$_POST` or `$_FILES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string (any bytes).
    Str(Vec<u8>),
    /// An integer (only `$_FILES` holds these: `error` and `size`).
    Int(i64),
    /// A nested array.
    Array(PhpArray),
}

impl Value {
    /// The string's bytes, if this is a string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The nested array, if this is one.
    pub fn as_array(&self) -> Option<&PhpArray> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// An ordered PHP array.
#[derive(Debug, Clone, Default)]
pub struct PhpArray {
    map: IndexMap<Key, Value>,
    /// PHP's `nNextFreeElement`: `None` until an integer key is inserted
    /// (the next `[]` is then 0). PHP 8 follows negative keys too
    /// (`a[-5]` then `a[]` is -4); PHP 7 would start at 0 — which is why
    /// the gateway never forwards `[]`.
    next_free: Option<i64>,
}

/// Equality is PHP's `===` on arrays: same keys, values and order.
impl PartialEq for PhpArray {
    fn eq(&self, other: &Self) -> bool {
        self.map.len() == other.map.len() && self.map.iter().eq(other.map.iter())
    }
}
impl Eq for PhpArray {}

impl PhpArray {
    /// An empty array.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of elements (not counting nested ones).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.map.iter()
    }

    /// The element under `key`.
    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.map.get(key)
    }

    /// The element under the string key `name` (as PHP would look it up:
    /// `"5"` finds the integer key 5).
    pub fn get_name(&self, name: &str) -> Option<&Value> {
        self.map.get(&KeyRef::from_bytes(name.as_bytes()))
    }

    /// Removes the element under the string key `name` (looked up as
    /// [`PhpArray::get_name`] does), keeping the order of the rest.
    pub fn remove_name(&mut self, name: &str) -> Option<Value> {
        self.map.shift_remove(&KeyRef::from_bytes(name.as_bytes()))
    }

    /// Sets `key`, keeping its position if it exists (PHP's update).
    pub fn update(&mut self, key: Key, value: Value) {
        if let Key::Int(h) = key
            && self.next_free.is_none_or(|n| h >= n)
        {
            self.next_free = Some(h.saturating_add(1));
        }
        self.map.insert(key, value);
    }

    /// Appends under the next free integer key (`a[]`); `None` when that
    /// key is taken (PHP drops the value).
    pub fn append(&mut self, value: Value) -> Option<&mut Value> {
        let key = Key::Int(self.next_free.unwrap_or(0));
        if self.map.contains_key(&key) {
            return None;
        }
        self.update(key.clone(), value);
        self.map.get_mut(&key)
    }

    /// Removes `key`, keeping the order of the rest.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        self.map.shift_remove(key)
    }

    /// The array under `key`, created (or replacing a string) if needed —
    /// what PHP does when a name descends through `key`.
    pub(crate) fn descend(&mut self, key: Key) -> &mut PhpArray {
        let is_array = matches!(self.map.get(&key), Some(Value::Array(_)));
        if !is_array {
            self.update(key.clone(), Value::Array(PhpArray::new()));
        }
        match self.map.get_mut(&key) {
            Some(Value::Array(a)) => a,
            _ => unreachable!("just made an array"),
        }
    }

    /// The number of leaves: strings and integers at any depth (what PHP
    /// counts against `max_input_vars` when it reads the canonical body).
    pub fn leaf_count(&self) -> usize {
        self.map
            .values()
            .map(|v| match v {
                Value::Array(a) => a.leaf_count(),
                _ => 1,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_finds_the_key_php_makes_of_it_without_copying() {
        let mut a = PhpArray::new();
        a.update(Key::from_bytes(b"5"), Value::Str(b"five".to_vec()));
        a.update(Key::from_bytes(b"05"), Value::Str(b"oh-five".to_vec()));
        a.update(Key::from_bytes(b"token"), Value::Str(b"t".to_vec()));
        assert_eq!(a.get_name("5"), Some(&Value::Str(b"five".to_vec())));
        assert_eq!(a.get_name("05"), Some(&Value::Str(b"oh-five".to_vec())));
        assert_eq!(a.get_name("token"), a.get(&Key::Str(b"token".to_vec())));
        assert_eq!(a.get_name("+5"), None);
        assert_eq!(a.remove_name("5"), Some(Value::Str(b"five".to_vec())));
        assert_eq!(a.get(&Key::Int(5)), None);
        let keys: Vec<_> = a.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            keys,
            [Key::Str(b"05".to_vec()), Key::Str(b"token".to_vec())]
        );
    }

    #[test]
    fn numeric_strings_become_integer_keys_as_php_makes_them() {
        assert_eq!(Key::from_bytes(b"0"), Key::Int(0));
        assert_eq!(Key::from_bytes(b"17"), Key::Int(17));
        assert_eq!(Key::from_bytes(b"-5"), Key::Int(-5));
        assert_eq!(Key::from_bytes(b"-9223372036854775808"), Key::Int(i64::MIN));
        for s in [
            "-0",
            "05",
            "+5",
            " 5",
            "5 ",
            "",
            "-",
            "9223372036854775808",
            "1e3",
        ] {
            assert_eq!(Key::from_bytes(s.as_bytes()), Key::Str(s.into()), "{s:?}");
        }
    }

    #[test]
    fn append_follows_the_largest_integer_key() {
        let mut a = PhpArray::new();
        a.append(Value::Str(b"x".to_vec()));
        a.update(Key::Int(5), Value::Str(b"y".to_vec()));
        a.update(Key::Int(2), Value::Str(b"z".to_vec()));
        a.append(Value::Str(b"w".to_vec()));
        let keys: Vec<_> = a.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, [Key::Int(0), Key::Int(5), Key::Int(2), Key::Int(6)]);

        let mut neg = PhpArray::new();
        neg.update(Key::Int(-5), Value::Str(vec![]));
        neg.append(Value::Str(vec![]));
        assert!(neg.get(&Key::Int(-4)).is_some());

        let mut full = PhpArray::new();
        full.update(Key::Int(i64::MAX), Value::Str(vec![]));
        assert!(full.append(Value::Str(vec![])).is_none());
    }

    #[test]
    fn update_keeps_the_position_of_an_existing_key() {
        let mut a = PhpArray::new();
        a.update(Key::Str(b"a".to_vec()), Value::Str(b"1".to_vec()));
        a.update(Key::Str(b"b".to_vec()), Value::Str(b"2".to_vec()));
        a.update(Key::Str(b"a".to_vec()), Value::Str(b"3".to_vec()));
        let got: Vec<_> = a.iter().map(|(k, v)| (k.to_text(), v.clone())).collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), Value::Str(b"3".to_vec())),
                ("b".to_string(), Value::Str(b"2".to_vec()))
            ]
        );
    }
}
