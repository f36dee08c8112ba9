//! Config values that may be written literally or as templates: `orders = 5000` or
//! `orders = "{{ params.orders }}"`.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::JobError;

/// A value of type `T` given literally, or as a template string that renders to one. When the
/// DAG is loaded a template is accepted as is; after rendering it must parse as a `T`.
#[derive(Debug, Clone, PartialEq)]
pub enum Templated<T> {
    Value(T),
    Text(String),
}

impl<T: FromStr + Copy> Templated<T> {
    /// The value, parsing rendered text. `field` names the field in the error.
    pub fn get(&self, field: &str) -> Result<T, JobError> {
        match self {
            Templated::Value(v) => Ok(*v),
            Templated::Text(text) => text.trim().parse().map_err(|_| {
                JobError::Config(format!(
                    "`{field}` must be a {}, got `{text}`",
                    std::any::type_name::<T>()
                ))
            }),
        }
    }
}

impl<T> Templated<T> {
    /// Checks a literal value at load time; templates are checked after rendering.
    pub fn check(&self, ok: impl Fn(&T) -> bool) -> bool {
        match self {
            Templated::Value(v) => ok(v),
            Templated::Text(text) => text.contains("{{") || text.contains("{%"),
        }
    }
}

struct TemplatedVisitor<T>(std::marker::PhantomData<T>);

macro_rules! visit_number {
    ($method:ident, $ty:ty) => {
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            T::try_from_number(v as f64, v.to_string()).map(Templated::Value).map_err(E::custom)
        }
    };
}

/// Numbers a [`Templated`] can hold.
pub trait TemplatedNumber: Sized + FromStr {
    fn try_from_number(v: f64, text: String) -> Result<Self, String>;
}

impl TemplatedNumber for u64 {
    fn try_from_number(_: f64, text: String) -> Result<Self, String> {
        text.parse().map_err(|_| format!("expected a whole number >= 0, got {text}"))
    }
}

impl TemplatedNumber for f64 {
    fn try_from_number(v: f64, _: String) -> Result<Self, String> {
        Ok(v)
    }
}

impl<'de, T: TemplatedNumber> Visitor<'de> for TemplatedVisitor<T> {
    type Value = Templated<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a template string")
    }

    visit_number!(visit_i64, i64);
    visit_number!(visit_u64, u64);
    visit_number!(visit_f64, f64);

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.contains("{{") || v.contains("{%") {
            return Ok(Templated::Text(v.to_string()));
        }
        v.trim()
            .parse::<T>()
            .map(Templated::Value)
            .map_err(|_| E::custom(format!("expected a number, got `{v}`")))
    }
}

impl<'de, T: TemplatedNumber> Deserialize<'de> for Templated<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TemplatedVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Config {
        n: Templated<u64>,
        ratio: Templated<f64>,
    }

    #[test]
    fn literals_templates_and_rendered_text() {
        let c: Config = toml::from_str("n = 5\nratio = 0.5").unwrap();
        assert_eq!((c.n.get("n").unwrap(), c.ratio.get("ratio").unwrap()), (5, 0.5));
        let c: Config = toml::from_str("n = \"{{ params.n }}\"\nratio = \"0.25\"").unwrap();
        assert!(c.n.check(|_| false), "templates pass load-time checks");
        assert_eq!(c.ratio.get("ratio").unwrap(), 0.25);
        let rendered = Templated::<u64>::Text("12".into());
        assert_eq!(rendered.get("n").unwrap(), 12);
        assert!(Templated::<u64>::Text("many".into()).get("n").is_err());
        assert!(toml::from_str::<Config>("n = -1\nratio = 1").is_err());
        assert!(toml::from_str::<Config>("n = \"x\"\nratio = 1").is_err());
    }
}
