//! `proxy-rewrite` (APISIX): rewrites the request sent upstream — `uri`,
//! `method`, `host`, and `headers` either as `{name: value}` (= set) or as
//! `{set: {}, add: {}, remove: []}`. `uri` and header values may hold
//! variables ([`super::template`]); their literal text must be valid where
//! it lands, which is checked here, once, for the admin API and the gateway.

use std::collections::BTreeMap;

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{template, PluginSpec};
use crate::error::ValidationError;
use crate::schema::METHODS;

pub const NAME: &str = "proxy-rewrite";

/// `proxy-rewrite`, validated. Boxed slices and strings: every route keeps
/// its configuration, with no room for more.
#[derive(Clone, Debug, Default)]
pub struct ProxyRewrite {
    /// A template whose literal text is valid in a URI path and query.
    pub uri: Option<Box<str>>,
    pub method: Option<Method>,
    pub host: Option<HeaderValue>,
    pub headers: HeaderOps,
}

/// Header operations, applied in this order: add, remove, set. Values are
/// templates whose literal text is valid in a header value.
#[derive(Clone, Debug, Default)]
pub struct HeaderOps {
    pub add: HeaderValues,
    pub remove: Box<[HeaderName]>,
    pub set: HeaderValues,
}

/// Header names and their value templates.
pub type HeaderValues = Box<[(HeaderName, Box<str>)]>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    uri: Option<String>,
    method: Option<String>,
    host: Option<String>,
    headers: Option<Map<String, Value>>,
}

impl PluginSpec for ProxyRewrite {
    const NAME: &'static str = NAME;

    /// APISIX's field set. Header names are RFC 9110 tokens, and the
    /// headers that frame a message are the proxy's business.
    fn schema() -> Value {
        // RFC 9110 token.
        let name = json!({"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", "maxLength": 256});
        // Headers that decide where a message ends are the proxy's business.
        let framing = json!({"not": {"pattern": "(?i)^(connection|content-length|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade)$"}});
        let header_map = json!({
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"allOf": [name, framing]},
            "additionalProperties": {
                "type": ["string", "number"],
                // No control characters but tab: a value is one header line.
                "pattern": "^[^\\x00-\\x08\\x0a-\\x1f\\x7f]*$",
                "maxLength": 4096
            }
        });
        let operations = ["set", "add", "remove"].map(|op| json!({"required": [op]}));
        json!({
            "type": "object",
            "properties": {
                "uri": {"type": "string", "pattern": "^/[^\\r\\n\\x00]*$", "maxLength": 4096},
                "method": {"enum": METHODS},
                "host": {"type": "string", "minLength": 1, "maxLength": 300, "pattern": "^[^\\s/@]+$"},
                "headers": {
                    "type": "object",
                    "if": {"anyOf": operations},
                    "then": {
                        "properties": {
                            "set": header_map,
                            "add": header_map,
                            "remove": {
                                "type": "array",
                                "minItems": 1,
                                "items": {"type": "string", "pattern": name["pattern"], "maxLength": 256}
                            }
                        },
                        "additionalProperties": false
                    },
                    "else": header_map
                }
            },
            "minProperties": 1,
            "additionalProperties": false
        })
    }

    fn validate(config: &Value, _: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let spec = Spec::deserialize(config).map_err(|e| ValidationError::Json(e.to_string()))?;
        if let Some(uri) = &spec.uri {
            check_uri(uri)?;
        }
        let method = spec
            .method
            .map(|m| {
                Method::from_bytes(m.as_bytes())
                    .map_err(|_| ValidationError::field("method", "is not an HTTP method"))
            })
            .transpose()?;
        let host = spec
            .host
            .map(|h| {
                HeaderValue::from_str(&h)
                    .map_err(|_| ValidationError::field("host", "is not a valid Host header value"))
            })
            .transpose()?;
        let headers = spec
            .headers
            .as_ref()
            .map(HeaderOps::parse)
            .transpose()?
            .unwrap_or_default();
        Ok(ProxyRewrite {
            uri: spec.uri.map(String::into_boxed_str),
            method,
            host,
            headers,
        })
    }
}

/// Each literal part must be valid in a URI on its own: variables are
/// percent-encoded when expanded, literal text is sent as written. `#` would
/// start a fragment, which a request never carries.
fn check_uri(uri: &str) -> Result<(), ValidationError> {
    let invalid = |literal: &String| {
        literal.contains('#') || PathAndQuery::try_from(format!("/{literal}")).is_err()
    };
    if template::literals(uri).iter().any(invalid) {
        return Err(ValidationError::field(
            "uri",
            "contains characters not allowed in a URI (such as a space, `#` or a control \
             character); percent-encode them",
        ));
    }
    Ok(())
}

impl HeaderOps {
    /// `headers` passed the schema: either `{set, add, remove}` or a map of
    /// headers to set.
    fn parse(headers: &Map<String, Value>) -> Result<HeaderOps, ValidationError> {
        const ACTIONS: [&str; 3] = ["add", "remove", "set"];
        if !headers.keys().any(|key| ACTIONS.contains(&key.as_str())) {
            return Ok(HeaderOps {
                set: header_values(headers, "headers")?,
                ..HeaderOps::default()
            });
        }
        let values = |action: &str| match headers.get(action) {
            Some(Value::Object(map)) => header_values(map, &format!("headers.{action}")),
            _ => Ok(HeaderValues::default()),
        };
        let remove = headers
            .get("remove")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, name)| {
                let field = format!("headers.remove[{i}]");
                header_name(name.as_str().unwrap_or_default(), &field)
            })
            .collect::<Result<_, _>>()?;
        Ok(HeaderOps {
            add: values("add")?,
            remove,
            set: values("set")?,
        })
    }
}

fn header_values(map: &Map<String, Value>, field: &str) -> Result<HeaderValues, ValidationError> {
    map.iter()
        .map(|(name, value)| {
            let field = format!("{field}.{name}");
            let header = header_name(name, &field)?;
            let text: Box<str> = match value {
                Value::String(text) => text.as_str().into(),
                Value::Number(number) => number.to_string().into(),
                _ => {
                    return Err(ValidationError::field(
                        field,
                        "must be a string or a number",
                    ))
                }
            };
            if template::literals(&text)
                .iter()
                .any(|literal| HeaderValue::from_str(literal).is_err())
            {
                return Err(ValidationError::field(
                    field,
                    "contains characters not allowed in a header value",
                ));
            }
            Ok((header, text))
        })
        .collect()
}

fn header_name(name: &str, field: &str) -> Result<HeaderName, ValidationError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ValidationError::field(field, "is not a valid header name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(config: Value) -> Result<ProxyRewrite, ValidationError> {
        ProxyRewrite::validate(&config, &BTreeMap::new())
    }

    #[test]
    fn the_uri_holds_only_what_a_request_can_carry() {
        for uri in ["/a b", "/a#b", "/a\tb", "/${uri ?? a b}", "/a<b"] {
            let err = validate(json!({"uri": uri})).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("invalid uri: contains characters"),
                "{uri:?}: {err}"
            );
        }
        for uri in [
            "/new",
            "/$uri?x=1",
            "/api/${http_x_tenant ?? none}/x",
            "/a%20b",
        ] {
            assert!(validate(json!({"uri": uri})).is_ok(), "{uri:?}");
        }
    }

    #[test]
    fn headers_become_typed_operations() {
        let ops = validate(json!({"headers": {"X-A": "1", "X-N": 2}}))
            .unwrap()
            .headers;
        let set: Vec<_> = ops
            .set
            .iter()
            .map(|(name, value)| (name.as_str(), &**value))
            .collect();
        assert_eq!(set, [("x-a", "1"), ("x-n", "2")]);
        let ops = validate(json!({"headers": {"add": {"X-B": "$host"}, "remove": ["X-C"]}}))
            .unwrap()
            .headers;
        assert_eq!(ops.add.len(), 1);
        assert_eq!(*ops.remove, [HeaderName::from_static("x-c")]);
        assert!(ops.set.is_empty());
    }

    #[test]
    fn the_host_is_a_header_value() {
        let err = validate(json!({"host": "a\u{1}b"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid host: is not a valid Host header value"
        );
    }
}
