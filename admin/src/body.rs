//! Request bodies: at most 1.5 MiB of JSON, whatever the `Content-Type`
//! (operators paste `curl -d`, which sends a form content type).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::error::AdminError;

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
    } else {
        AdminError::UnreadableBody(rejection.body_text())
    }
}

pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, AdminError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AdminError::InvalidJson(
            "the body is empty, expected a JSON object".into(),
        ));
    }
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(AdminError::InvalidJson(format!(
            "expected a JSON object, got {}",
            json_type(&other)
        ))),
        Err(err) => Err(AdminError::InvalidJson(err.to_string())),
    }
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
