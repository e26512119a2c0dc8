//! `proxy-rewrite`, as APISIX: changes what the upstream receives.
//!
//! * `uri`: the upstream path (variables allowed); the client's query
//!   string is kept, appended after any query the new URI has. Variable
//!   values may hold `/` and `.`, so a rendered path with a `.` or `..`
//!   segment (also percent-encoded, or `..;x`) is refused with 500 rather
//!   than sent: a client value must not climb out of the path the route
//!   writes;
//! * `method`, `host`;
//! * `headers`: either `{name: value}` (set), or `{add, remove, set}`,
//!   applied in that order (APISIX's). A value is a string, a number, or an
//!   array of those (several headers of one name).
//!
//! A header value that expands to nothing leaves the header out: `set`
//! removes the header, `add` adds nothing. So a client can never supply the
//! value of a header the route sets (a forged `X-Ssl-Client-S-Dn` on a path
//! served without a certificate is removed, not passed on), and the upstream
//! never sees an empty identity header. nginx's `proxy_set_header` behaves
//! the same. That promise holds for `set` only: `add` appends to what the
//! client sent, so the client's own values of that header reach the
//! upstream too; give identity headers with `set`. Headers that frame the
//! message (`Content-Length`, `Transfer-Encoding`, `Connection`, ...) cannot
//! be set or added.

use std::ops::ControlFlow;

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, StatusCode, Uri};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::vars::{Escape, Template, Vars};
use super::{Flow, Plugin, RequestCtx};
use crate::path::has_dot_segment;
use crate::reply::json_response;

pub(super) const NAME: &str = "proxy-rewrite";

/// Headers a plugin must not set: they decide where a message ends.
const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    uri: Option<String>,
    method: Option<String>,
    host: Option<String>,
    headers: Option<Map<String, Value>>,
    /// APISIX's plugin metadata (`_meta.disable`, ...): accepted, unused.
    #[serde(rename = "_meta")]
    _meta: Option<Value>,
}

struct ProxyRewrite {
    uri: Option<Template>,
    method: Option<Method>,
    host: Option<HeaderValue>,
    headers: HeaderOps,
}

/// Header operations, applied as add, remove, set. Boxed slices: every
/// route keeps its own, with no room for more.
#[derive(Default)]
struct HeaderOps {
    add: HeaderTemplates,
    remove: Box<[HeaderName]>,
    set: HeaderTemplates,
}

/// Header names with the templates of their values.
type HeaderTemplates = Box<[(HeaderName, Box<[HeaderTemplate]>)]>;

/// One configured header value. Text without variables becomes a header
/// value once, with the route; only the rest is rendered per request.
enum HeaderTemplate {
    Fixed(HeaderValue),
    Vars(Template),
}

pub(super) fn build(config: &Value) -> Result<Box<dyn Plugin>, String> {
    let config = Config::deserialize(config).map_err(|err| err.to_string())?;
    let uri = config.uri.as_deref().map(parse_uri).transpose()?;
    let method = config
        .method
        .as_deref()
        .map(|m| {
            Method::from_bytes(m.as_bytes())
                .map_err(|_| format!("method {m:?} is not an HTTP method"))
        })
        .transpose()?;
    let host = config
        .host
        .as_deref()
        .map(|h| {
            HeaderValue::from_str(h)
                .map_err(|_| format!("host {h:?} is not a valid Host header value"))
        })
        .transpose()?;
    let headers = config
        .headers
        .as_ref()
        .map(HeaderOps::parse)
        .transpose()?
        .unwrap_or_default();
    let plugin = ProxyRewrite {
        uri,
        method,
        host,
        headers,
    };
    plugin.warn_unknown_variables();
    Ok(Box::new(plugin))
}

fn parse_uri(raw: &str) -> Result<Template, String> {
    let template = Template::parse(raw);
    for literal in template.literals() {
        if literal.contains('#') || PathAndQuery::try_from(format!("/{literal}")).is_err() {
            return Err(format!(
                "uri {raw:?} contains characters not allowed in a URI"
            ));
        }
    }
    Ok(template)
}

impl HeaderOps {
    fn parse(headers: &Map<String, Value>) -> Result<HeaderOps, String> {
        const ACTIONS: [&str; 3] = ["add", "remove", "set"];
        if !headers.keys().any(|key| ACTIONS.contains(&key.as_str())) {
            return Ok(HeaderOps {
                set: parse_header_values(headers, "headers")?,
                ..HeaderOps::default()
            });
        }
        if let Some(other) = headers.keys().find(|key| !ACTIONS.contains(&key.as_str())) {
            return Err(format!(
                "headers: {other:?} cannot be mixed with add/remove/set"
            ));
        }
        let object = |action: &str| match headers.get(action) {
            None => Ok(HeaderTemplates::default()),
            Some(Value::Object(map)) => parse_header_values(map, &format!("headers.{action}")),
            Some(_) => Err(format!("headers.{action} must be an object")),
        };
        Ok(HeaderOps {
            add: object("add")?,
            set: object("set")?,
            remove: parse_removals(headers.get("remove"))?,
        })
    }

    fn apply(&self, ctx: &RequestCtx<'_>, req: &mut Parts) {
        for (name, values) in &self.add {
            for value in render_values(values, ctx, req) {
                req.headers.append(name.clone(), value);
            }
        }
        for name in &self.remove {
            req.headers.remove(name);
        }
        for (name, values) in &self.set {
            let rendered = render_values(values, ctx, req);
            req.headers.remove(name);
            for value in rendered {
                req.headers.append(name.clone(), value);
            }
        }
    }

    fn templates(&self) -> impl Iterator<Item = &Template> {
        self.add
            .iter()
            .chain(&self.set)
            .flat_map(|(_, values)| values)
            .filter_map(|value| match value {
                HeaderTemplate::Fixed(_) => None,
                HeaderTemplate::Vars(template) => Some(template),
            })
    }
}

fn parse_header_values(map: &Map<String, Value>, field: &str) -> Result<HeaderTemplates, String> {
    map.iter()
        .map(|(name, value)| {
            let header = header_name(name, field)?;
            if FRAMING_HEADERS.contains(&header.as_str()) {
                return Err(format!(
                    "{field}: {name:?} frames the message and cannot be rewritten"
                ));
            }
            let values = match value {
                Value::Array(items) => items
                    .iter()
                    .map(|item| header_template(item, name, field))
                    .collect::<Result<Vec<_>, _>>()?,
                single => vec![header_template(single, name, field)?],
            };
            Ok((header, values.into_iter().flatten().collect()))
        })
        .collect()
}

fn parse_removals(remove: Option<&Value>) -> Result<Box<[HeaderName]>, String> {
    let Some(remove) = remove else {
        return Ok(Box::default());
    };
    let names = remove
        .as_array()
        .ok_or("headers.remove must be an array of header names")?;
    names
        .iter()
        .map(|name| {
            let name = name
                .as_str()
                .ok_or("headers.remove must be an array of header names")?;
            header_name(name, "headers.remove")
        })
        .collect()
}

fn header_name(name: &str, field: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{field}: {name:?} is not a valid header name"))
}

/// `None` for a value without variables that is empty once trimmed: it is
/// never sent.
fn header_template(
    value: &Value,
    name: &str,
    field: &str,
) -> Result<Option<HeaderTemplate>, String> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => {
            return Err(format!(
                "{field}.{name}: a value must be a string, a number or an array of those"
            ))
        }
    };
    let template = Template::parse(&text);
    if template
        .literals()
        .any(|literal| HeaderValue::from_str(literal).is_err())
    {
        return Err(format!(
            "{field}.{name}: the value contains characters not allowed in a header"
        ));
    }
    Ok(match template.fixed_text() {
        Some(text) => header_value(text).map(HeaderTemplate::Fixed),
        None => Some(HeaderTemplate::Vars(template)),
    })
}

/// The non-empty expansions of `values`, as header values.
fn render_values(values: &[HeaderTemplate], ctx: &RequestCtx<'_>, req: &Parts) -> Vec<HeaderValue> {
    let vars = Vars { ctx, req };
    values
        .iter()
        .filter_map(|value| match value {
            HeaderTemplate::Fixed(value) => Some(value.clone()),
            HeaderTemplate::Vars(template) => {
                header_value(&template.render_to_string(&vars, Escape::HeaderValue))
            }
        })
        .collect()
}

/// `text`, trimmed, as a header value. Control characters were escaped and
/// literals checked at build time, so conversion only fails on an empty
/// value.
fn header_value(text: &str) -> Option<HeaderValue> {
    let text = text.trim();
    (!text.is_empty())
        .then(|| HeaderValue::from_bytes(text.as_bytes()).ok())
        .flatten()
}

impl ProxyRewrite {
    fn warn_unknown_variables(&self) {
        for name in self
            .uri
            .iter()
            .chain(self.headers.templates())
            .flat_map(Template::unknown_variables)
        {
            tracing::warn!(
                plugin = NAME,
                variable = name,
                "unknown variable; it expands to an empty string"
            );
        }
    }

    fn rewrite_uri(template: &Template, ctx: &RequestCtx<'_>, req: &mut Parts) -> Flow {
        let mut target = template.render_to_string(&Vars { ctx, req }, Escape::Path);
        if !target.starts_with('/') {
            target.insert(0, '/');
        }
        let path = target
            .split_once('?')
            .map_or(target.as_str(), |(path, _)| path);
        if template.fixed_text().is_none() && has_dot_segment(path) {
            return refuse(ctx, "rewritten uri has a `.` or `..` segment");
        }
        if let Some(query) = ctx.query() {
            target.push(if target.contains('?') { '&' } else { '?' });
            target.push_str(query);
        }
        let rewritten = PathAndQuery::try_from(target)
            .map_err(|err| err.to_string())
            .and_then(|path| {
                let mut parts = req.uri.clone().into_parts();
                parts.path_and_query = Some(path);
                Uri::from_parts(parts).map_err(|err| err.to_string())
            });
        match rewritten {
            Ok(uri) => {
                req.uri = uri;
                ControlFlow::Continue(())
            }
            Err(reason) => refuse(ctx, &reason),
        }
    }
}

/// Fails closed: sending the original path could reach what the rewrite was
/// meant to keep out of reach.
fn refuse(ctx: &RequestCtx<'_>, reason: &str) -> Flow {
    tracing::warn!(route = ctx.route_id, plugin = NAME, %reason, "rewritten uri is invalid");
    ControlFlow::Break(json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "failed to rewrite the request uri",
    ))
}

impl Plugin for ProxyRewrite {
    fn name(&self) -> &'static str {
        NAME
    }

    fn upstream_request_filter(&self, ctx: &RequestCtx<'_>, req: &mut Parts) -> Flow {
        if let Some(method) = &self.method {
            req.method = method.clone();
        }
        if let Some(template) = &self.uri {
            Self::rewrite_uri(template, ctx, req)?;
        }
        if let Some(host) = &self.host {
            req.headers.insert(http::header::HOST, host.clone());
        }
        self.headers.apply(ctx, req);
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests;
