//! Reads one Rust source file far enough to list the module paths it names:
//! every leaf of its `use` trees (grouped ones included) and every inline
//! path (`crate::a::b`, `super::X`, `child::f()`), each with its line and the
//! (inline) module it appears in. Comments, strings and character literals
//! are skipped, so a path in a doc comment or a message is not an import.

/// A path as written, not yet resolved.
#[derive(Debug)]
pub(crate) struct Named {
    pub(crate) segments: Vec<String>,
    pub(crate) line: usize,
    /// The inline modules (`mod tests { .. }`) it appears in, outermost first.
    pub(crate) scope: Vec<String>,
    /// For a `use` leaf: the name it binds (its alias, or its last segment);
    /// `None` for a glob and for an inline path.
    pub(crate) binds: Option<String>,
}

/// What one file declares and names.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    pub(crate) paths: Vec<Named>,
    /// Inline modules, as paths relative to the file's module.
    pub(crate) inline_modules: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Semi,
    Star,
    Other,
}

pub(crate) fn scan(source: &str) -> Scanned {
    Parser {
        toks: lex(source),
        at: 0,
        scope: Vec::new(),
        out: Scanned::default(),
    }
    .run()
}

fn lex(source: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let mut toks = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= chars.len() {
                    break;
                } else if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if let Some(len) = raw_string_prefix(&chars, i) {
            // r"..", r#".."#, br#".."#: ends at a quote followed by as many hashes.
            let hashes = len - 2 - usize::from(c == 'b') - usize::from(c == 'c');
            i += len;
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#') {
                    i += 1 + hashes;
                    break;
                }
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
        } else if c == '"' || ((c == 'b' || c == 'c') && at(i + 1) == '"') {
            i += if c == '"' { 1 } else { 2 };
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                line += usize::from(at(i) == '\n');
                i += 1;
            }
            i += 1;
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            // A character literal, or a lifetime (no closing quote).
            let q = if c == 'b' { i + 1 } else { i };
            if at(q + 1) == '\\' {
                i = q + 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(q + 2) == '\'' {
                i = q + 3;
            } else {
                i = q + 1;
            }
        } else if c == 'r' && at(i + 1) == '#' && (at(i + 2).is_alphabetic() || at(i + 2) == '_') {
            i += 2; // a raw identifier: lexed as its name next
        } else if c.is_alphabetic() || c == '_' {
            let begin = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            toks.push((Tok::Ident(chars[begin..i].iter().collect()), start_line));
        } else if c == ':' && at(i + 1) == ':' {
            toks.push((Tok::PathSep, line));
            i += 2;
        } else {
            let tok = match c {
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                ';' => Tok::Semi,
                '*' => Tok::Star,
                _ => Tok::Other,
            };
            toks.push((tok, line));
            i += 1;
        }
    }
    toks
}

/// The length of a raw string's opening (`r"`, `r##"`, `br#"`), if one starts at `i`.
fn raw_string_prefix(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if matches!(chars.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some(j + 1 - i)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    /// Inline modules entered, with the brace depth each one closes at.
    scope: Vec<(String, usize)>,
    out: Scanned,
}

impl Parser {
    fn peek(&self, ahead: usize) -> Option<&Tok> {
        self.toks.get(self.at + ahead).map(|(tok, _)| tok)
    }

    fn ident(&self, ahead: usize) -> Option<&str> {
        match self.peek(ahead) {
            Some(Tok::Ident(name)) => Some(name),
            _ => None,
        }
    }

    fn run(mut self) -> Scanned {
        let mut depth = 0;
        while let Some(tok) = self.peek(0).cloned() {
            match tok {
                Tok::Ident(word) if word == "use" => {
                    self.at += 1;
                    self.use_tree(Vec::new());
                }
                Tok::Ident(word) if word == "mod" && self.peek(2) == Some(&Tok::Open) => {
                    let name = self.ident(1).unwrap_or_default().to_owned();
                    depth += 1;
                    self.scope.push((name, depth));
                    let path = self.scope_names();
                    self.out.inline_modules.push(path);
                    self.at += 3;
                }
                Tok::Ident(_) if self.at == 0 || self.toks[self.at - 1].0 != Tok::PathSep => {
                    self.inline_path()
                }
                Tok::Open => {
                    depth += 1;
                    self.at += 1;
                }
                Tok::Close => {
                    if self.scope.last().is_some_and(|(_, d)| *d == depth) {
                        self.scope.pop();
                    }
                    depth -= 1;
                    self.at += 1;
                }
                _ => self.at += 1,
            }
        }
        self.out
    }

    fn scope_names(&self) -> Vec<String> {
        self.scope.iter().map(|(name, _)| name.clone()).collect()
    }

    /// `a::b::c` (not followed by `{`, which only a `use` tree has).
    fn inline_path(&mut self) {
        let line = self.toks[self.at].1;
        let mut segments = Vec::new();
        while let Some(name) = self.ident(0) {
            segments.push(name.to_owned());
            self.at += 1;
            if self.peek(0) == Some(&Tok::PathSep) && matches!(self.peek(1), Some(Tok::Ident(_))) {
                self.at += 1;
            } else {
                break;
            }
        }
        if segments.len() > 1 {
            let scope = self.scope_names();
            self.out.paths.push(Named {
                segments,
                line,
                scope,
                binds: None,
            });
        }
    }

    /// One `use` tree, after `use` or inside a group, below `prefix`.
    fn use_tree(&mut self, mut segments: Vec<String>) {
        let mut line = self.toks.get(self.at).map_or(0, |(_, line)| *line);
        let mut glob = false;
        if self.peek(0) == Some(&Tok::PathSep) {
            self.at += 1; // `use ::std::..`
        }
        loop {
            match self.peek(0).cloned() {
                Some(Tok::Ident(name)) => {
                    line = self.toks[self.at].1;
                    self.at += 1;
                    // `{self, ..}` names the prefix itself.
                    if name != "self" || segments.is_empty() {
                        segments.push(name);
                    }
                    if self.peek(0) != Some(&Tok::PathSep) {
                        break;
                    }
                    self.at += 1;
                }
                Some(Tok::Star) => {
                    self.at += 1;
                    glob = true;
                    break;
                }
                Some(Tok::Open) => {
                    self.at += 1;
                    while !matches!(self.peek(0), Some(Tok::Close) | None) {
                        self.use_tree(segments.clone());
                        if self.peek(0) == Some(&Tok::Comma) {
                            self.at += 1;
                        }
                    }
                    self.at += 1;
                    return;
                }
                _ => break,
            }
        }
        let mut binds = segments.last().cloned().filter(|_| !glob);
        if self.ident(0) == Some("as") {
            binds = self.ident(1).map(str::to_owned);
            self.at += 2;
        }
        let scope = self.scope_names();
        self.out.paths.push(Named {
            segments,
            line,
            scope,
            binds,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(source: &str) -> Vec<String> {
        scan(source)
            .paths
            .iter()
            .map(|p| p.segments.join("::"))
            .collect()
    }

    #[test]
    fn grouped_use_trees_give_one_path_per_leaf() {
        let source = "use crate::{a, b::{self, c as d}, e::*};\nuse super::f;";
        assert_eq!(
            leaves(source),
            [
                "crate::a",
                "crate::b",
                "crate::b::c",
                "crate::e",
                "super::f"
            ]
        );
        assert_eq!(scan(source).paths[2].binds.as_deref(), Some("d"));
    }

    #[test]
    fn comments_strings_and_chars_are_not_paths() {
        let source =
            "// crate::a::B\n/* crate::b */ let s = \"crate::c\"; let r = r#\"crate::d\"#;\n\
                      let c = '\"'; fn f<'a>(x: &'a str) { crate::e::g(x) }";
        assert_eq!(leaves(source), ["crate::e::g"]);
        assert_eq!(scan(source).paths[0].line, 3);
    }

    #[test]
    fn inline_modules_are_scopes() {
        let source = "mod tests { use super::*; fn f() {} }\nuse crate::x;";
        let scanned = scan(source);
        assert_eq!(scanned.inline_modules, [vec!["tests".to_owned()]]);
        assert_eq!(scanned.paths[0].scope, ["tests"]);
        assert!(scanned.paths[1].scope.is_empty());
    }
}
