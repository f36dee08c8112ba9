//! Typed run parameters: declared in a DAG's `[params]`, overridable per run.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The type a parameter's values must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Array => "array",
            ParamType::Object => "object",
        }
    }

    pub fn accepts(self, value: &Value) -> bool {
        match self {
            ParamType::String => value.is_string(),
            ParamType::Integer => value.is_i64() || value.is_u64(),
            ParamType::Number => value.is_number(),
            ParamType::Boolean => value.is_boolean(),
            ParamType::Array => value.is_array(),
            ParamType::Object => value.is_object(),
        }
    }

    /// Parses a value typed on a command line or in a form field.
    pub fn parse_text(self, text: &str) -> Result<Value, String> {
        let bad = || format!("expected {}, got `{text}`", self.name());
        match self {
            ParamType::String => Ok(Value::String(text.to_string())),
            ParamType::Integer => text.trim().parse::<i64>().map(Value::from).map_err(|_| bad()),
            ParamType::Number => text.trim().parse::<f64>().map(Value::from).map_err(|_| bad()),
            ParamType::Boolean => match text.trim() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(bad()),
            },
            ParamType::Array | ParamType::Object => {
                let value: Value = serde_json::from_str(text).map_err(|_| bad())?;
                if self.accepts(&value) {
                    Ok(value)
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// A declared parameter.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub ty: ParamType,
    /// Used when a run does not set the parameter; `None` makes it required.
    pub default: Option<Value>,
    pub description: Option<String>,
}

/// Merges a run's parameter values over the declared defaults and checks their types.
///
/// Returns every problem found, one message each, naming the parameter.
pub fn resolve(
    specs: &IndexMap<String, ParamSpec>,
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<String>> {
    let mut errors = Vec::new();
    for name in given.keys() {
        if !specs.contains_key(name) {
            errors.push(format!("unknown param `{name}`"));
        }
    }
    let mut resolved = Map::new();
    for (name, spec) in specs {
        match given.get(name).or(spec.default.as_ref()) {
            Some(value) if spec.ty.accepts(value) => {
                resolved.insert(name.clone(), value.clone());
            }
            Some(value) => errors
                .push(format!("param `{name}` must be of type {}, got {value}", spec.ty.name())),
            None => errors.push(format!("param `{name}` is required (it has no default)")),
        }
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn specs() -> IndexMap<String, ParamSpec> {
        let mut specs = IndexMap::new();
        specs.insert(
            "orders".into(),
            ParamSpec { ty: ParamType::Integer, default: Some(json!(5000)), description: None },
        );
        specs.insert(
            "region".into(),
            ParamSpec { ty: ParamType::String, default: None, description: None },
        );
        specs
    }

    #[test]
    fn defaults_fill_in_and_overrides_win() {
        let given = json!({"region": "eu", "orders": 7}).as_object().unwrap().clone();
        let resolved = resolve(&specs(), &given).unwrap();
        assert_eq!(Value::Object(resolved), json!({"orders": 7, "region": "eu"}));
    }

    #[test]
    fn every_problem_is_reported() {
        let given = json!({"orders": "many", "colour": 1}).as_object().unwrap().clone();
        let errors = resolve(&specs(), &given).unwrap_err();
        assert_eq!(
            errors,
            vec![
                "unknown param `colour`".to_string(),
                "param `orders` must be of type integer, got \"many\"".to_string(),
                "param `region` is required (it has no default)".to_string(),
            ]
        );
    }

    #[test]
    fn text_values_parse_by_type() {
        assert_eq!(ParamType::Integer.parse_text("42"), Ok(json!(42)));
        assert!(ParamType::Integer.parse_text("4.2").is_err());
        assert_eq!(ParamType::Boolean.parse_text("true"), Ok(json!(true)));
        assert_eq!(ParamType::Array.parse_text("[1,2]"), Ok(json!([1, 2])));
    }
}
