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
//!   applied in that order (APISIX's). A value is a string or a number.
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
use shared::plugins::proxy_rewrite as config;

use super::vars::{Escape, Template, Vars};
use super::{Build, BuildError, Flow, Plugin, RequestCtx};
use crate::path::has_dot_segment;
use crate::reply::json_response;

pub(super) const NAME: &str = config::NAME;

struct ProxyRewrite {
    uri: Option<Template>,
    method: Option<Method>,
    host: Option<HeaderValue>,
    headers: HeaderOps,
}

#[derive(Default)]
struct HeaderOps {
    add: HeaderTemplates,
    remove: Box<[HeaderName]>,
    set: HeaderTemplates,
}

/// `None`: a value that is empty without variables (the header is left out).
type HeaderTemplates = Box<[(HeaderName, Option<HeaderTemplate>)]>;

enum HeaderTemplate {
    Fixed(HeaderValue),
    Vars(Template),
}

impl Build for config::ProxyRewrite {
    const PRIORITY: i32 = 1008;

    /// Literal text was checked by validation: templates parse, nothing
    /// here can fail.
    fn build(&self) -> Result<Box<dyn Plugin>, BuildError> {
        let plugin = ProxyRewrite {
            uri: self.uri.as_deref().map(Template::parse),
            method: self.method.clone(),
            host: self.host.clone(),
            headers: HeaderOps::new(&self.headers),
        };
        plugin.warn_unknown_variables();
        Ok(Box::new(plugin))
    }
}

impl HeaderOps {
    fn new(ops: &config::HeaderOps) -> HeaderOps {
        HeaderOps {
            add: header_templates(&ops.add),
            remove: ops.remove.clone(),
            set: header_templates(&ops.set),
        }
    }

    fn apply(&self, ctx: &RequestCtx<'_>, req: &mut Parts) {
        for (name, value) in &self.add {
            if let Some(value) = render_value(value.as_ref(), ctx, req) {
                req.headers.append(name.clone(), value);
            }
        }
        for name in &self.remove {
            req.headers.remove(name);
        }
        for (name, value) in &self.set {
            let rendered = render_value(value.as_ref(), ctx, req);
            req.headers.remove(name);
            if let Some(value) = rendered {
                req.headers.append(name.clone(), value);
            }
        }
    }

    fn templates(&self) -> impl Iterator<Item = &Template> {
        self.add
            .iter()
            .chain(&self.set)
            .filter_map(|(_, value)| match value {
                Some(HeaderTemplate::Vars(template)) => Some(template),
                _ => None,
            })
    }
}

fn header_templates(values: &config::HeaderValues) -> HeaderTemplates {
    values
        .iter()
        .map(|(name, text)| (name.clone(), header_template(text)))
        .collect()
}

fn header_template(text: &str) -> Option<HeaderTemplate> {
    let template = Template::parse(text);
    match template.fixed_text() {
        Some(text) => header_value(text).map(HeaderTemplate::Fixed),
        None => Some(HeaderTemplate::Vars(template)),
    }
}

fn render_value(
    value: Option<&HeaderTemplate>,
    ctx: &RequestCtx<'_>,
    req: &Parts,
) -> Option<HeaderValue> {
    match value? {
        HeaderTemplate::Fixed(value) => Some(value.clone()),
        HeaderTemplate::Vars(template) => {
            header_value(&template.render_to_string(&Vars { ctx, req }, Escape::HeaderValue))
        }
    }
}

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
