//! serde: a table with systemd's key names; values are strings or numbers, IO keys a string
//! or a list of strings. Serializes back to the same human forms.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::parse::lerr;
use super::Limits;
use crate::error::LimitError;
use crate::key::LimitKey;

struct Values(Vec<String>, bool /* was a list */);

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Values;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a string such as \"512M\", \"50%\" or \"max\", a number, or a list of \
                     strings (IO keys)",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Values, E> {
                Ok(Values(vec![v.to_string()], false))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Values, E> {
                Ok(Values(vec![v.to_string()], false))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Values, E> {
                Ok(Values(vec![v.to_string()], false))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Values, E> {
                Ok(Values(vec![v.to_string()], false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Values, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Values(out, true))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Limits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Limits;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a table of limits with keys {}", LimitKey::ACCEPTED)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Limits, A::Error> {
                let mut l = Limits::default();
                let mut seen = BTreeSet::new();
                while let Some(name) = map.next_key::<String>()? {
                    let Values(vals, list) = map.next_value()?;
                    let first = vals.first().map(String::as_str).unwrap_or("");
                    let key: LimitKey = name
                        .parse()
                        .map_err(|e| de::Error::custom(LimitError::unknown(e, first)))?;
                    if !seen.insert(key) {
                        return Err(de::Error::custom(format!("{key} is given twice")));
                    }
                    if list && !key.is_per_device() {
                        return Err(de::Error::custom(lerr(
                            key,
                            &format!("{vals:?}"),
                            "expects one value, not a list",
                        )));
                    }
                    for v in &vals {
                        l.set(key, v).map_err(de::Error::custom)?;
                    }
                }
                Ok(l)
            }
        }
        d.deserialize_map(V)
    }
}

impl Serialize for Limits {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // LimitKey's order is print order.
        let mut grouped: BTreeMap<LimitKey, Vec<String>> = BTreeMap::new();
        for (k, v) in self.entries() {
            grouped.entry(k).or_default().push(v);
        }
        let mut m = s.serialize_map(Some(grouped.len()))?;
        for (k, vals) in grouped {
            if k.is_per_device() {
                m.serialize_entry(k.as_str(), &vals)?;
            } else {
                m.serialize_entry(k.as_str(), &vals[0])?;
            }
        }
        m.end()
    }
}
