//! `domains` entries written as objects: `{"name": "api.openai.com",
//! "shared": true}` bans a name served from a shared front end (a CDN, a
//! cloud's API front ends) by the name a connection sends, never by its
//! addresses. A plain string stays what it always was: a *dedicated* name,
//! whose resolved addresses are banned.

use std::{borrow::Cow, fmt};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, de};

use super::ports::DomainRule;

/// One `domains` entry: the rule, and whether it was marked shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainEntry {
    pub rule: DomainRule,
    pub shared: bool,
}

/// The object form, checked field by field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Object {
    name: DomainRule,
    #[serde(default)]
    shared: bool,
}

impl<'de> Deserialize<'de> for DomainEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = DomainEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a name ("api.example.com") or {"name": "api.example.com", "shared": true}"#)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<DomainEntry, E> {
                let rule = s.parse().map_err(E::custom)?;
                Ok(DomainEntry {
                    rule,
                    shared: false,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<DomainEntry, A::Error> {
                let o = Object::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if o.shared && matches!(o.name, DomainRule::Port(_)) {
                    return Err(de::Error::custom(
                        "a shared name is judged by the name each connection sends, on \
                         every port: write it without a port",
                    ));
                }
                Ok(DomainEntry {
                    rule: o.name,
                    shared: o.shared,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for DomainEntry {
    fn schema_name() -> Cow<'static, str> {
        "DomainEntry".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let rule = generator.subschema_for::<DomainRule>();
        json_schema!({
            "oneOf": [
                rule,
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name"],
                    "properties": {
                        "name": rule,
                        "shared": {
                            "type": "boolean",
                            "default": false,
                            "description": "deny.domains only. false (the default, and what a plain string means): a dedicated name, whose resolved addresses are banned. true: a name on a shared front end (a CDN), banned by the name each TCP connection to its addresses sends (TLS server_name, HTTP Host); its addresses are never banned."
                        }
                    }
                }
            ]
        })
    }
}
