//! The syntax of nginx-style variables in plugin settings (`$host`,
//! `${host}`, `${http_x_tenant ?? none}`): which parts of a setting are
//! literal text, which are variables. Validation checks the literal text
//! (a URI, a header value); the gateway resolves the variable names and
//! expands them per request.

/// One part of a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<'a> {
    Literal(String),
    /// `$name`, `${name}`, or `${name ?? default}` (the default replaces an
    /// empty value). The name as written.
    Var {
        name: &'a str,
        default: Option<&'a str>,
    },
}

impl Segment<'_> {
    /// The text outside variables (defaults included).
    pub fn literal(&self) -> Option<&str> {
        match self {
            Segment::Literal(text) => Some(text),
            Segment::Var { default, .. } => *default,
        }
    }
}

/// Parses `text`. Never fails: a `$` that starts no variable name, or an
/// unterminated `${`, is literal text.
pub fn parse(text: &str) -> Vec<Segment<'_>> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        literal.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        match parse_var(after) {
            Some((segment, consumed)) => {
                if !literal.is_empty() {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                }
                segments.push(segment);
                rest = &after[consumed..];
            }
            None => {
                literal.push('$');
                rest = after;
            }
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    segments
}

/// The literal parts of `text` (variable defaults included).
pub fn literals(text: &str) -> Vec<String> {
    parse(text)
        .iter()
        .filter_map(|segment| segment.literal().map(str::to_owned))
        .collect()
}

/// Parses what follows a `$`: the segment and how many bytes it used.
fn parse_var(after: &str) -> Option<(Segment<'_>, usize)> {
    if let Some(braced) = after.strip_prefix('{') {
        let close = braced.find('}')?;
        let inner = &braced[..close];
        let (name, default) = match inner.split_once("??") {
            Some((name, default)) => (name.trim(), Some(default.trim())),
            None => (inner.trim(), None),
        };
        if name.is_empty() || !name.bytes().all(is_name_byte) {
            return None;
        }
        return Some((Segment::Var { name, default }, close + 2));
    }
    let len = after.bytes().take_while(|&b| is_name_byte(b)).count();
    if len == 0 {
        return None;
    }
    let segment = Segment::Var {
        name: &after[..len],
        default: None,
    };
    Some((segment, len))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_literals_from_variables() {
        let segments = parse("pre-$uri/${host}-${http_x_tenant ?? none}$");
        assert_eq!(
            segments,
            [
                Segment::Literal("pre-".into()),
                Segment::Var {
                    name: "uri",
                    default: None
                },
                Segment::Literal("/".into()),
                Segment::Var {
                    name: "host",
                    default: None
                },
                Segment::Literal("-".into()),
                Segment::Var {
                    name: "http_x_tenant",
                    default: Some("none")
                },
                Segment::Literal("$".into()),
            ]
        );
        assert_eq!(literals("/a ${x ?? b c}"), ["/a ", "b c"]);
        assert_eq!(literals("v2 $ 5 ${unterminated"), ["v2 $ 5 ${unterminated"]);
    }
}
