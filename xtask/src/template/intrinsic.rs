//! CloudFormation values that may be intrinsic functions (`Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`), as a
//! typed [`Expr`], and the YAML reading that rewrites short tags (`!Ref X`) to their long form.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A template value: a literal or an intrinsic function.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub enum Expr {
    /// A string, number or boolean, as text.
    Literal(String),
    /// `Ref: Name` (a parameter, a pseudo parameter or a resource).
    Ref(String),
    /// `Fn::GetAtt: [Resource, Attribute]` or `Fn::GetAtt: Resource.Attribute`.
    GetAtt { resource: String, attribute: String },
    /// `Fn::Sub: text` or `Fn::Sub: [text, {variables}]`.
    Sub {
        text: String,
        variables: BTreeMap<String, Expr>,
    },
    /// `Fn::Join: [separator, [values]]`.
    Join { separator: String, items: Vec<Expr> },
    /// Any other value (`Fn::If`, `Fn::Select`, a list, ...): kept, refused only if the local stack
    /// has to resolve it.
    Unsupported(Value),
}

impl Expr {
    /// The literal text, if this is a literal.
    pub fn literal(&self) -> Option<&str> {
        match self {
            Expr::Literal(s) => Some(s),
            _ => None,
        }
    }

    /// The logical id behind `Fn::GetAtt: [X, ...]` or `Ref: X`.
    pub fn referenced_resource(&self) -> Option<&str> {
        match self {
            Expr::GetAtt { resource, .. } | Expr::Ref(resource) => Some(resource),
            _ => None,
        }
    }
}

impl TryFrom<Value> for Expr {
    type Error = String;

    fn try_from(v: Value) -> Result<Expr, String> {
        if let Some(s) = scalar_text(&v) {
            return Ok(Expr::Literal(s));
        }
        let Value::Object(map) = &v else {
            return Ok(Expr::Unsupported(v));
        };
        let mut entries = map.iter();
        let (Some((key, arg)), None) = (entries.next(), entries.next()) else {
            return Ok(Expr::Unsupported(v));
        };
        match key.as_str() {
            "Ref" => match arg {
                Value::String(name) => Ok(Expr::Ref(name.clone())),
                _ => Err(format!("Ref takes a name, found {arg}")),
            },
            "Fn::GetAtt" => {
                let parts = match arg {
                    Value::Array(parts) => match parts.as_slice() {
                        [Value::String(r), Value::String(a)] => Some((r.clone(), a.clone())),
                        _ => None,
                    },
                    Value::String(s) => s
                        .split_once('.')
                        .map(|(r, a)| (r.to_string(), a.to_string())),
                    _ => None,
                };
                let (resource, attribute) = parts.ok_or_else(|| {
                    format!(
                        "Fn::GetAtt takes [Resource, Attribute] or Resource.Attribute, found {arg}"
                    )
                })?;
                Ok(Expr::GetAtt {
                    resource,
                    attribute,
                })
            }
            "Fn::Sub" => {
                let bad =
                    || format!("Fn::Sub takes a string or [string, {{variables}}], found {arg}");
                match arg {
                    Value::String(text) => Ok(Expr::Sub {
                        text: text.clone(),
                        variables: BTreeMap::new(),
                    }),
                    Value::Array(parts) => match parts.as_slice() {
                        [Value::String(text), Value::Object(vars)] => Ok(Expr::Sub {
                            text: text.clone(),
                            variables: vars
                                .iter()
                                .map(|(k, v)| Ok((k.clone(), Expr::try_from(v.clone())?)))
                                .collect::<Result<_, String>>()?,
                        }),
                        _ => Err(bad()),
                    },
                    _ => Err(bad()),
                }
            }
            "Fn::Join" => match arg.as_array().map(Vec::as_slice) {
                Some([Value::String(separator), Value::Array(items)]) => Ok(Expr::Join {
                    separator: separator.clone(),
                    items: items
                        .iter()
                        .map(|i| Expr::try_from(i.clone()))
                        .collect::<Result<_, String>>()?,
                }),
                _ => Err(format!("Fn::Join takes [separator, [values]], found {arg}")),
            },
            _ => Ok(Expr::Unsupported(v)),
        }
    }
}

/// A string, number or boolean as text.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads template YAML as JSON, rewriting CloudFormation short tags to their long form, so the typed
/// model sees one shape.
pub fn read_yaml(text: &str) -> Result<Value> {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| anyhow!("the template is not valid YAML: {e}"))?;
    yaml_to_json(yaml)
}

fn yaml_to_json(v: serde_yaml_ng::Value) -> Result<Value> {
    use serde_yaml_ng::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64().map(Value::from).unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(seq) => Value::Array(seq.into_iter().map(yaml_to_json).collect::<Result<_>>()?),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => bail!("unsupported mapping key {other:?}"),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value)?;
            let (key, value) = match tag {
                "Ref" => ("Ref".to_string(), inner),
                "Condition" => ("Condition".to_string(), inner),
                "GetAtt" => {
                    let value = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((res, attr)) => {
                                Value::Array(vec![Value::from(res), Value::from(attr)])
                            }
                            None => bail!("!GetAtt {s} is not of the form Resource.Attribute"),
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_string(), value)
                }
                other => (format!("Fn::{other}"), inner),
            };
            let mut m = Map::new();
            m.insert(key, value);
            Value::Object(m)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expr(v: Value) -> Expr {
        Expr::try_from(v).unwrap()
    }

    #[test]
    fn reads_both_forms_of_every_supported_intrinsic() {
        let short = read_yaml(
            "a: !Ref X\nb: !GetAtt Q.Arn\nc: !Sub '${A}-${B}'\nd: !Join [',', [x, !Ref Y]]\ne: 5\n",
        )
        .unwrap();
        let long = json!({
            "a": {"Ref": "X"},
            "b": {"Fn::GetAtt": ["Q", "Arn"]},
            "c": {"Fn::Sub": "${A}-${B}"},
            "d": {"Fn::Join": [",", ["x", {"Ref": "Y"}]]},
            "e": 5,
        });
        assert_eq!(short, long);
        assert_eq!(expr(long["a"].clone()), Expr::Ref("X".into()));
        assert_eq!(
            expr(long["b"].clone()),
            Expr::GetAtt {
                resource: "Q".into(),
                attribute: "Arn".into()
            }
        );
        assert_eq!(
            expr(json!({"Fn::GetAtt": "Q.QueueName"})).referenced_resource(),
            Some("Q")
        );
        assert!(matches!(expr(long["c"].clone()), Expr::Sub { .. }));
        assert!(
            matches!(expr(long["d"].clone()), Expr::Join { ref items, .. } if items.len() == 2)
        );
        assert_eq!(expr(long["e"].clone()), Expr::Literal("5".into()));
    }

    #[test]
    fn keeps_intrinsics_it_cannot_resolve_for_later() {
        let v = json!({"Fn::If": ["C", "a", "b"]});
        assert_eq!(expr(v.clone()), Expr::Unsupported(v));
    }

    #[test]
    fn refuses_a_malformed_intrinsic_with_its_shape() {
        let err = Expr::try_from(json!({"Fn::GetAtt": ["OnlyOne"]})).unwrap_err();
        assert!(err.contains("[Resource, Attribute]"), "{err}");
        assert!(read_yaml("a: !GetAtt NoDot").is_err());
    }
}
