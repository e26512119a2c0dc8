//! Property tests for the `$variable` template parser and renderer: any
//! template text parses, any request renders, and what a client controls
//! (path, query, headers, Host) can never inject a header line or escape a
//! path, whatever it holds.
//!
//! Raise the case count for a longer run with `PROPTEST_CASES`.

use http::request::Parts;
use http::{HeaderValue, Request};
use proptest::prelude::*;

use super::*;
use crate::context::ConnInfo;

/// Variables whose value the client chooses.
const CLIENT_VARS: &[&str] = &[
    "$uri",
    "$request_uri",
    "$host",
    "$args",
    "$arg_page",
    "$http_x_tenant",
    "${http_user_agent}",
    "${arg_q ?? none}",
    "$request_method",
    "$ssl_client_s_dn",
    "$remote_addr",
];

/// What a client sent: the normalised path, the raw request target, the
/// Host, the query and two headers. Anything at all.
#[derive(Clone, Debug)]
struct Sent {
    uri: String,
    request_uri: String,
    host: Option<String>,
    headers: Vec<(&'static str, Vec<u8>)>,
}

fn sent() -> impl Strategy<Value = Sent> {
    (
        any::<String>(),
        any::<String>(),
        proptest::option::of(any::<String>()),
        proptest::collection::vec(
            (
                proptest::sample::select(&["x-tenant", "user-agent"][..]),
                proptest::collection::vec(any::<u8>(), 0..40),
            ),
            0..3,
        ),
    )
        .prop_map(|(uri, request_uri, host, headers)| Sent {
            uri,
            request_uri,
            host,
            headers,
        })
}

fn conn() -> ConnInfo {
    ConnInfo::new(
        ([127, 0, 0, 1], 40_000).into(),
        ([127, 0, 0, 1], 9080).into(),
        None,
    )
}

/// The request parts: the headers that are valid header values (the HTTP
/// parser refuses the others before any plugin runs).
fn parts(sent: &Sent) -> Parts {
    let (mut parts, ()) = Request::new(()).into_parts();
    for (name, value) in &sent.headers {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            parts.headers.append(*name, value);
        }
    }
    parts
}

fn render(template: &str, sent: &Sent, escape: Escape) -> String {
    let conn = conn();
    let req = parts(sent);
    let ctx = RequestCtx {
        conn: &conn,
        route_id: "1",
        host: sent.host.as_deref(),
        uri: &sent.uri,
        request_uri: &sent.request_uri,
        extensions: http::Extensions::new(),
    };
    Template::parse(template).render_to_string(
        &Vars {
            ctx: &ctx,
            req: &req,
        },
        escape,
    )
}

/// Template text: mostly variables and the characters of the syntax.
fn template() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        proptest::sample::select(CLIENT_VARS).prop_map(str::to_owned),
        proptest::sample::select(
            &["$", "{", "}", "${", "??", " ", "$$", "${}", "${ ?? }", "_"][..]
        )
        .prop_map(str::to_owned),
        "[a-zA-Z0-9_]{0,6}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // A failure is turned into a named regression test instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_template_parses_and_renders(text in template(), sent in sent()) {
        let parsed = Template::parse(&text);
        let _ = parsed.unknown_variables().count();
        let _ = render(&text, &sent, Escape::HeaderValue);
        let _ = render(&text, &sent, Escape::Path);
    }

    #[test]
    fn client_input_cannot_inject_a_header_line(
        vars in proptest::collection::vec(proptest::sample::select(CLIENT_VARS), 1..5),
        literal in "[ -~]{0,8}",
        sent in sent(),
    ) {
        let text = format!("{literal}{}", vars.concat());
        let out = render(&text, &sent, Escape::HeaderValue);
        prop_assert!(
            !out.chars().any(|c| c.is_control() && c != '\t'),
            "{text:?} rendered a control character: {out:?}"
        );
    }

    #[test]
    fn client_input_cannot_leave_the_path(
        vars in proptest::collection::vec(proptest::sample::select(CLIENT_VARS), 1..5),
        sent in sent(),
    ) {
        let out = render(&vars.concat(), &sent, Escape::Path);
        prop_assert!(
            !out.chars().any(|c| c.is_control() || c.is_whitespace() || "?#\"<>\\^`{|}".contains(c)),
            "{vars:?} rendered {out:?}"
        );
    }

    #[test]
    fn text_without_variables_renders_unchanged(text in "[^$]*", sent in sent()) {
        prop_assert_eq!(render(&text, &sent, Escape::HeaderValue), text.clone());
        prop_assert_eq!(render(&text, &sent, Escape::Path), text);
    }

    #[test]
    fn a_dollar_that_starts_no_name_is_literal(
        before in "[^$]{0,8}",
        after in "[^$a-zA-Z0-9_{][^$]{0,8}",
        sent in sent(),
    ) {
        let text = format!("{before}${after}");
        prop_assert_eq!(render(&text, &sent, Escape::HeaderValue), text);
    }
}
