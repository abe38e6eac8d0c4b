//! JSON for floats that may be NaN or infinite (a diverged sampler's metrics): finite values as
//! numbers, the others as the strings `"NaN"`, `"inf"`, `"-inf"` (plain JSON has no such numbers,
//! and `serde_json` would write `null`, which does not read back). Use with
//! `#[serde(with = "crate::pipeline::floats")]` on an `f64`, or the `map` / `maps` modules on
//! metric maps.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    Number(f64),
    Text(String),
}

fn to_repr(v: f64) -> Repr {
    match v {
        v if v.is_nan() => Repr::Text("NaN".into()),
        v if v == f64::INFINITY => Repr::Text("inf".into()),
        v if v == f64::NEG_INFINITY => Repr::Text("-inf".into()),
        v => Repr::Number(v),
    }
}

fn from_repr<E: serde::de::Error>(r: Repr) -> Result<f64, E> {
    match r {
        Repr::Number(v) => Ok(v),
        Repr::Text(t) => match t.as_str() {
            "NaN" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            other => Err(E::custom(format!("`{other}` is not a number"))),
        },
    }
}

/// Serialises one float.
pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    to_repr(*v).serialize(s)
}

/// Deserialises one float.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    from_repr(Repr::deserialize(d)?)
}

/// A name → float map.
pub mod map {
    use super::*;

    /// Serialises the map.
    pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        m.iter().map(|(k, v)| (k.clone(), to_repr(*v))).collect::<BTreeMap<_, _>>().serialize(s)
    }

    /// Deserialises the map.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        BTreeMap::<String, Repr>::deserialize(d)?.into_iter().map(|(k, v)| Ok((k, from_repr::<D::Error>(v)?))).collect()
    }
}

/// A list of name → float maps.
pub mod maps {
    use super::*;

    /// Serialises the list.
    pub fn serialize<S: Serializer>(m: &[BTreeMap<String, f64>], s: S) -> Result<S::Ok, S::Error> {
        m.iter().map(|m| m.iter().map(|(k, v)| (k.clone(), to_repr(*v))).collect::<BTreeMap<_, _>>()).collect::<Vec<_>>().serialize(s)
    }

    /// Deserialises the list.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BTreeMap<String, f64>>, D::Error> {
        Vec::<BTreeMap<String, Repr>>::deserialize(d)?.into_iter().map(|m| m.into_iter().map(|(k, v)| Ok((k, from_repr::<D::Error>(v)?))).collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Row {
        #[serde(with = "super")]
        x: f64,
        #[serde(with = "super::map")]
        m: std::collections::BTreeMap<String, f64>,
    }

    #[test]
    fn non_finite_values_round_trip() {
        for x in [1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0] {
            let row = Row { x, m: [("a".to_string(), x)].into() };
            let text = serde_json::to_string(&row).unwrap();
            let back: Row = serde_json::from_str(&text).unwrap();
            assert!(back.x == x || (x.is_nan() && back.x.is_nan()), "{text}");
            assert!(back.m["a"] == x || (x.is_nan() && back.m["a"].is_nan()), "{text}");
        }
        assert!(serde_json::from_str::<Row>(r#"{"x": "seven", "m": {}}"#).is_err());
    }
}
