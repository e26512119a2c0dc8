//! What the gateway answers with, shared by every layer that answers: the
//! body type of its responses and the JSON replies it makes itself (the
//! proxy's errors, plugins refusing a request).

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};

/// Any error a body may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the proxy produces: streamed from the
/// upstream, or a small JSON error.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A response with the JSON body `{"error_msg": message}`, as APISIX answers.
pub fn json_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    json_reply(
        status,
        serde_json::json!({ "error_msg": message }).to_string(),
    )
}

/// `status` with the JSON text `body`, sent as is: also what plugins answer
/// with, in the bodies of the gateways they are compatible with (Kong's
/// `{"message":"You cannot consume this service"}`, ...).
pub fn json_reply(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
