//! The operator-facing reasons an object is refused: at the bottom of the
//! crate, so that [`crate::schema`], [`crate::client_chain`] and
//! [`crate::validate`] all use it without importing one another.

use thiserror::Error;

/// Why an object was refused. The message names the offending field and is
/// returned verbatim to the operator as `{"error_msg": "..."}`.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ValidationError {
    /// The body is not JSON, or is JSON of the wrong shape.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The JSON schema refused the object.
    #[error("invalid configuration: {0}")]
    Schema(String),
    /// A semantic check on one field failed.
    #[error("invalid {field}: {reason}")]
    Field { field: String, reason: String },
}

impl ValidationError {
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error for a field nested under `parent` (an inline upstream's
    /// `nodes` becomes `upstream.nodes`).
    pub fn within(self, parent: &str) -> Self {
        match self {
            ValidationError::Field { field, reason } => ValidationError::Field {
                field: format!("{parent}.{field}"),
                reason,
            },
            other => other,
        }
    }
}

/// Which of two mutually exclusive settings an object gave (see
/// [`exactly_one`]).
pub(crate) enum OneOf<A, B> {
    First(A),
    Second(B),
}

/// Exactly one of two named settings, the error reported on `field`.
pub(crate) fn exactly_one<A, B>(
    (first_name, first): (&str, Option<A>),
    (second_name, second): (&str, Option<B>),
    field: &str,
) -> Result<OneOf<A, B>, ValidationError> {
    match (first, second) {
        (Some(first), None) => Ok(OneOf::First(first)),
        (None, Some(second)) => Ok(OneOf::Second(second)),
        (Some(_), Some(_)) => Err(ValidationError::field(
            field,
            format!("give either `{first_name}` or `{second_name}`, not both"),
        )),
        (None, None) => Err(ValidationError::field(
            field,
            format!("one of `{first_name}` or `{second_name}` is required"),
        )),
    }
}
