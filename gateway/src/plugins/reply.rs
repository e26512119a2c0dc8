//! Responses plugins answer with themselves, with bodies fixed by the
//! gateways they are compatible with (Kong's
//! `{"message":"You cannot consume this service"}`, ...).

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt as _, Full};

use crate::proxy::ProxyBody;

/// `status` with the JSON text `body`, sent as is.
pub(crate) fn json(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
