//! Request bodies: at most 1.5 MiB of JSON, whatever the `Content-Type`
//! (operators paste `curl -d`, which sends a form content type).

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::error::AdminError;
use crate::server::BodyTimedOut;

/// Turns the raw body (or why it could not be read) into a JSON object.
pub(crate) fn json_object(
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Value>, AdminError> {
    let bytes = body.map_err(read_error)?;
    parse_object(&bytes)
}

fn read_error(rejection: BytesRejection) -> AdminError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AdminError::BodyTooLarge
    } else if timed_out(&rejection) {
        AdminError::BodyTimeout(BodyTimedOut)
    } else {
        AdminError::UnreadableBody(rejection.body_text())
    }
}

/// Whether the body failed because the listener's deadline passed.
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(err) = cause {
        if err.is::<BodyTimedOut>() {
            return true;
        }
        cause = err.source();
    }
    false
}

pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, AdminError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AdminError::InvalidJson(
            "the body is empty, expected a JSON object".into(),
        ));
    }
    let bytes = escape_raw_control_chars(bytes);
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(AdminError::InvalidJson(format!(
            "expected a JSON object, got {}",
            json_type(&other)
        ))),
        Err(err) => Err(AdminError::InvalidJson(err.to_string())),
    }
}

/// Escapes raw control characters inside JSON strings.
///
/// The APISIX walkthroughs paste PEM files into bodies with
/// `"cert": "'"$(<server.crt)"'"`, which puts literal newlines inside JSON
/// strings. Strict JSON forbids them but APISIX's parser accepts them, so we
/// do too: outside strings the bytes are left alone (the parser still judges
/// them), inside strings a control character becomes its escape.
fn escape_raw_control_chars(bytes: &[u8]) -> Cow<'_, [u8]> {
    let mut in_string = false;
    let mut escaped = false;
    let needs_escape = |in_string: bool, b: u8| in_string && b < 0x20;
    let mut out: Option<Vec<u8>> = None;
    for (i, &b) in bytes.iter().enumerate() {
        if needs_escape(in_string, b) {
            let out = out.get_or_insert_with(|| bytes[..i].to_vec());
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            }
            escaped = false;
            continue;
        }
        if let Some(out) = out.as_mut() {
            out.push(b);
        }
        match (in_string, escaped, b) {
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, true, _) => escaped = false,
            (false, _, b'"') => in_string = true,
            _ => {}
        }
    }
    out.map_or(Cow::Borrowed(bytes), Cow::Owned)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objects() {
        let object = parse_object(br#" {"uri": "/a"} "#).expect("object");
        assert_eq!(object["uri"], "/a");
    }

    #[test]
    fn accepts_pasted_pem_with_raw_newlines() {
        let body = b"{\"cert\": \"-----BEGIN\nline\ttab\r\n-----END\\\"\n\", \"x\":\n 1}";
        let object = parse_object(body).expect("object");
        assert_eq!(object["cert"], "-----BEGIN\nline\ttab\r\n-----END\"\n");
        assert_eq!(object["x"], 1);
    }

    #[test]
    fn refuses_everything_else() {
        for (body, expected) in [
            (&b""[..], "empty"),
            (b"  \n", "empty"),
            (b"{\"uri\": ", "EOF"),
            (b"[1]", "an array"),
            (b"\"x\"", "a string"),
            (b"uri=/a", "expected value"),
        ] {
            let err = parse_object(body).expect_err("not an object");
            let msg = err.to_string();
            assert!(msg.starts_with("invalid JSON"), "{msg}");
            assert!(msg.contains(expected), "{msg}");
        }
    }
}
