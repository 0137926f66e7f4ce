//! Resolves intrinsic functions ([`Expr`]) against the local stack's parameter values, names, URLs and ARNs.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};

use super::intrinsic::Expr;
use super::{LOCAL_ACCOUNT, LOCAL_REGION};

/// What `Ref` and `Fn::GetAtt` answer locally.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// Parameter values.
    pub parameters: BTreeMap<String, String>,
    /// What `Ref: <logical id>` returns (table name, queue URL, ...).
    pub refs: BTreeMap<String, String>,
    /// What `Fn::GetAtt: [<logical id>, <attribute>]` returns.
    pub attributes: BTreeMap<(String, String), String>,
    /// Template resources the local stack does not create, by logical id, with their type. `Ref` to one
    /// answers its logical id and `Fn::GetAtt` an ARN-shaped placeholder, so a function that merely names
    /// such a resource (a Glue database, an Athena workgroup) still starts locally.
    pub unprovisioned: BTreeMap<String, String>,
}

impl Resolver {
    /// Resolves a value to a string.
    pub fn resolve(&self, v: &Expr) -> Result<String> {
        match v {
            Expr::Literal(s) => Ok(s.clone()),
            Expr::Ref(name) => self.reference(name),
            Expr::GetAtt {
                resource,
                attribute,
            } => self.attribute(resource, attribute),
            Expr::Sub { text, variables } => {
                let vars = variables
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.resolve(v)?)))
                    .collect::<Result<BTreeMap<_, _>>>()?;
                self.substitute(text, &vars)
            }
            Expr::Join { separator, items } => {
                let parts = items
                    .iter()
                    .map(|i| self.resolve(i))
                    .collect::<Result<Vec<_>>>()?;
                Ok(parts.join(separator))
            }
            Expr::Unsupported(v) => bail!("intrinsic {v} is not supported by the local stack"),
        }
    }

    fn reference(&self, name: &str) -> Result<String> {
        let pseudo = match name {
            "AWS::Region" => Some(LOCAL_REGION),
            "AWS::AccountId" => Some(LOCAL_ACCOUNT),
            "AWS::Partition" => Some("aws"),
            "AWS::URLSuffix" => Some("amazonaws.com"),
            "AWS::StackName" => Some("fluxo-local"),
            _ => None,
        };
        if let Some(p) = pseudo {
            return Ok(p.to_string());
        }
        if let Some(v) = self.parameters.get(name).or_else(|| self.refs.get(name)) {
            return Ok(v.clone());
        }
        if self.unprovisioned.contains_key(name) {
            return Ok(name.to_string());
        }
        Err(anyhow!(
            "Ref {name}: no parameter value or local resource of that name"
        ))
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Result<String> {
        if let Some(v) = self
            .attributes
            .get(&(resource.to_string(), attribute.to_string()))
        {
            return Ok(v.clone());
        }
        if let Some(kind) = self.unprovisioned.get(resource) {
            return Ok(placeholder_attribute(kind, resource, attribute));
        }
        Err(anyhow!(
            "Fn::GetAtt {resource}.{attribute} is not known to the local stack"
        ))
    }

    /// `Fn::Sub`: `${Name}`, `${Resource.Attr}`, `${!Literal}`.
    fn substitute(&self, text: &str, vars: &BTreeMap<String, String>) -> Result<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| anyhow!("Fn::Sub {text:?}: unclosed ${{"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else if let Some((res, attr)) = name.split_once('.') {
                out.push_str(&self.attribute(res, attr)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Resolves a function's environment variables.
    pub fn environment(&self, vars: &BTreeMap<String, Expr>) -> Result<BTreeMap<String, String>> {
        vars.iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    self.resolve(v)
                        .with_context(|| format!("environment variable {k}"))?,
                ))
            })
            .collect()
    }
}

/// `Arn` of a resource the local stack does not create: `arn:aws:<service>:<region>:<account>:<id>`;
/// any other attribute: the logical id.
fn placeholder_attribute(kind: &str, resource: &str, attribute: &str) -> String {
    if attribute != "Arn" {
        return resource.to_string();
    }
    let service = kind
        .split("::")
        .nth(1)
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "local".to_string());
    format!("arn:aws:{service}:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{resource}")
}
