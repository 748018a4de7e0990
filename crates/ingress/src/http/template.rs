//! `google.api.http` path templates: parsing and matching.
//!
//! The grammar (from `google/api/http.proto`):
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! `{var}` is short for `{var=*}`. `*` matches one segment (possibly empty), `**` the rest of the
//! path (zero or more segments) and may only be the last segment. Matching works on the
//! percent-decoded path: a literal matches its decoded segment; a variable captures the decoded
//! text of its segments, except that a variable spanning several segments keeps `%2F` encoded
//! (so that an encoded slash stays distinguishable from a separator, as the specification asks).

use std::fmt;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Matches exactly this (decoded) text.
    Literal(String),
    /// `*`: any single segment.
    Any,
    /// `**`: all remaining segments.
    Rest,
}

/// A variable of a template: a field path and the segments it captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Variable {
    /// The dotted field path, split at the dots.
    pub(crate) field_path: Vec<String>,
    /// Index of the first captured segment.
    start: usize,
    /// Index after the last captured segment; `None` when it ends with `**` (the end of the
    /// path).
    end: Option<usize>,
}

impl Variable {
    /// The field path as written, e.g. `a.b.c`.
    pub(crate) fn name(&self) -> String {
        self.field_path.join(".")
    }

    /// Index after the last captured segment of a template with `length` segments.
    fn end(&self, length: usize) -> usize {
        self.end.unwrap_or(length)
    }
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError(pub(crate) String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a request path matched: the decoded value of every variable, in template order.
pub(crate) type Captures = Vec<String>;

/// Why a matching path cannot be used: its percent-encoding is not valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidEncoding(pub(crate) String);

impl PathTemplate {
    /// Parses `template`.
    pub(crate) fn parse(template: &str) -> Result<PathTemplate, TemplateError> {
        let error =
            |message: String| TemplateError(format!("path template {template:?}: {message}"));
        let Some(rest) = template.strip_prefix('/') else {
            return Err(error("must start with '/'".into()));
        };
        let mut parser = Parser {
            input: rest,
            segments: Vec::new(),
            variables: Vec::new(),
        };
        let verb = parser.parse().map_err(error)?;
        let Parser {
            segments,
            variables,
            ..
        } = parser;
        if let Some(position) = segments.iter().position(|s| *s == Segment::Rest)
            && position + 1 != segments.len()
        {
            return Err(error("'**' must be the last segment".into()));
        }
        let mut names: Vec<_> = variables.iter().map(Variable::name).collect();
        names.sort();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(error(format!("variable {{{}}} appears twice", pair[0])));
        }
        Ok(PathTemplate {
            segments,
            variables,
            verb,
        })
    }

    /// The template's variables, in order.
    pub(crate) fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// Whether both templates match exactly the same paths (whatever their variables are
    /// called).
    pub(crate) fn same_paths(&self, other: &PathTemplate) -> bool {
        self.segments == other.segments && self.verb == other.verb
    }

    /// How specific the template is, for ordering overlapping templates: smaller sorts first and
    /// wins. Literals beat `*`, which beats `**`; with equal segments, a template with a verb
    /// beats one without.
    pub(crate) fn specificity(&self) -> Vec<u8> {
        let mut key: Vec<u8> = self
            .segments
            .iter()
            .map(|segment| match segment {
                Segment::Literal(_) => 0,
                Segment::Any => 1,
                Segment::Rest => 2,
            })
            .collect();
        key.push(if self.verb.is_some() { 0 } else { 1 });
        key
    }

    /// Matches a request path. `None` if it does not match; otherwise the captured variable
    /// values, or an error if a captured value is not valid percent-encoded UTF-8.
    pub(crate) fn matches(
        &self,
        path: &RequestPath<'_>,
    ) -> Option<Result<Captures, InvalidEncoding>> {
        let count = path.segments.len();
        // With a verb, the last segment must end with `:verb`, which is not part of it.
        let last = match &self.verb {
            Some(verb) => Some(
                path.segments
                    .last()?
                    .strip_suffix(verb.as_str())?
                    .strip_suffix(':')?,
            ),
            None => None,
        };
        let segment = |index: usize| match last {
            Some(last) if index + 1 == count => last,
            _ => path.segments[index],
        };
        let has_rest = self.segments.last() == Some(&Segment::Rest);
        let fixed = self.segments.len() - usize::from(has_rest);
        if count < fixed || (!has_rest && count != fixed) {
            return None;
        }
        for (index, pattern) in self.segments.iter().enumerate() {
            if let Segment::Literal(literal) = pattern {
                let segment = segment(index);
                // Compare without decoding when possible (the common case).
                let equal = if segment.contains('%') {
                    decode(segment, false).is_ok_and(|decoded| decoded == *literal)
                } else {
                    segment == literal
                };
                if !equal {
                    return None;
                }
            }
        }
        Some(
            self.variables
                .iter()
                .map(|variable| match variable.end {
                    Some(end) if end == variable.start + 1 => {
                        decode(segment(variable.start), false)
                    }
                    end => {
                        let end = end.unwrap_or(count);
                        let joined: Vec<&str> = (variable.start..end).map(segment).collect();
                        decode(&joined.join("/"), true)
                    }
                })
                .collect(),
        )
    }
}

/// A request path split into its (still percent-encoded) segments, once for all templates.
pub(crate) struct RequestPath<'a> {
    segments: Vec<&'a str>,
}

impl<'a> RequestPath<'a> {
    /// Splits `path`; `None` unless it starts with `/`.
    pub(crate) fn parse(path: &'a str) -> Option<RequestPath<'a>> {
        let segments = path.strip_prefix('/')?.split('/').collect();
        Some(RequestPath { segments })
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut index = 0;
        while index < self.segments.len() {
            f.write_str("/")?;
            match self.variables.iter().find(|v| v.start == index) {
                Some(variable) => {
                    let end = variable.end(self.segments.len());
                    let inner = &self.segments[index..end];
                    write!(f, "{{{}", variable.name())?;
                    if inner != [Segment::Any] {
                        f.write_str("=")?;
                        for (i, segment) in inner.iter().enumerate() {
                            if i > 0 {
                                f.write_str("/")?;
                            }
                            write_segment(f, segment)?;
                        }
                    }
                    f.write_str("}")?;
                    index = end;
                }
                None => {
                    write_segment(f, &self.segments[index])?;
                    index += 1;
                }
            }
        }
        if let Some(verb) = &self.verb {
            write!(f, ":{verb}")?;
        }
        Ok(())
    }
}

fn write_segment(f: &mut fmt::Formatter<'_>, segment: &Segment) -> fmt::Result {
    match segment {
        Segment::Literal(literal) => f.write_str(literal),
        Segment::Any => f.write_str("*"),
        Segment::Rest => f.write_str("**"),
    }
}

/// A recursive-descent parser over the template after its leading `/`.
struct Parser<'a> {
    input: &'a str,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
}

impl Parser<'_> {
    /// Parses `Segments [ Verb ]` up to the end; returns the verb.
    fn parse(&mut self) -> Result<Option<String>, String> {
        self.segments(false)?;
        if let Some(verb) = self.input.strip_prefix(':') {
            if verb.is_empty() || !verb.chars().all(is_literal_char) {
                return Err(format!("invalid verb {verb:?}"));
            }
            self.input = "";
            return Ok(Some(verb.to_owned()));
        }
        if let Some(c) = self.input.chars().next() {
            return Err(format!("unexpected {c:?}"));
        }
        Ok(None)
    }

    /// Parses `Segment { "/" Segment }`.
    fn segments(&mut self, in_variable: bool) -> Result<(), String> {
        loop {
            self.segment(in_variable)?;
            match self.input.strip_prefix('/') {
                Some(rest) => self.input = rest,
                None => return Ok(()),
            }
        }
    }

    fn segment(&mut self, in_variable: bool) -> Result<(), String> {
        if let Some(rest) = self.input.strip_prefix("**") {
            self.input = rest;
            self.segments.push(Segment::Rest);
        } else if let Some(rest) = self.input.strip_prefix('*') {
            self.input = rest;
            self.segments.push(Segment::Any);
        } else if let Some(rest) = self.input.strip_prefix('{') {
            if in_variable {
                return Err("variables cannot be nested".into());
            }
            self.input = rest;
            self.variable()?;
        } else {
            let length = self
                .input
                .find(|c: char| !is_literal_char(c))
                .unwrap_or(self.input.len());
            if length == 0 {
                return Err(match self.input.chars().next() {
                    Some(c) => format!("unexpected {c:?} where a segment should start"),
                    None => "empty segment".into(),
                });
            }
            let literal =
                decode(&self.input[..length], false).map_err(|InvalidEncoding(message)| message)?;
            self.input = &self.input[length..];
            self.segments.push(Segment::Literal(literal));
        }
        Ok(())
    }

    /// Parses `FieldPath [ "=" Segments ] "}"` (after the `{`).
    fn variable(&mut self) -> Result<(), String> {
        let length = self
            .input
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(self.input.len());
        let path = &self.input[..length];
        let field_path: Vec<String> = path.split('.').map(str::to_owned).collect();
        if field_path.iter().any(|part| !is_identifier(part)) {
            return Err(format!("invalid field path {path:?} in a variable"));
        }
        self.input = &self.input[length..];
        let start = self.segments.len();
        if let Some(rest) = self.input.strip_prefix('=') {
            self.input = rest;
            self.segments(true)?;
        } else {
            self.segments.push(Segment::Any);
        }
        let Some(rest) = self.input.strip_prefix('}') else {
            return Err(format!("variable {{{path}}} is not closed with '}}'"));
        };
        self.input = rest;
        let end = (self.segments.last() != Some(&Segment::Rest)).then_some(self.segments.len());
        self.variables.push(Variable {
            field_path,
            start,
            end,
        });
        Ok(())
    }
}

fn is_identifier(part: &str) -> bool {
    let mut chars = part.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Characters allowed in literals and verbs: RFC 3986 unreserved and sub-delims (except the
/// template's own syntax), `@`, `%` escapes, and non-ASCII text.
fn is_literal_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(
            c,
            '-' | '.'
                | '_'
                | '~'
                | '%'
                | '!'
                | '$'
                | '&'
                | '\''
                | '('
                | ')'
                | '+'
                | ','
                | ';'
                | '@'
        )
}

/// Percent-decodes `text` into UTF-8. With `keep_slash`, `%2F` stays encoded (multi-segment
/// variables, where a decoded slash would be indistinguishable from a separator).
pub(crate) fn decode(text: &str, keep_slash: bool) -> Result<String, InvalidEncoding> {
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b'/') if keep_slash => {
                out.extend_from_slice(&bytes[i..i + 3]);
                i += 3;
            }
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| InvalidEncoding(format!("{text:?} does not decode to UTF-8 text")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(template: &str) -> PathTemplate {
        PathTemplate::parse(template).unwrap()
    }

    fn matches(template: &str, path: &str) -> Option<Result<Captures, InvalidEncoding>> {
        parse(template).matches(&RequestPath::parse(path)?)
    }

    fn captures(template: &str, path: &str) -> Option<Vec<String>> {
        matches(template, path).map(Result::unwrap)
    }

    fn names(template: &PathTemplate) -> Vec<String> {
        template.variables().iter().map(Variable::name).collect()
    }

    #[test]
    fn parses_every_segment_kind() {
        let template = parse("/v1/{name=shelves/*/books/**}:publish");
        assert_eq!(names(&template), ["name"]);
        assert_eq!(
            template.to_string(),
            "/v1/{name=shelves/*/books/**}:publish"
        );
        let template = parse("/cart/{user_id}/items/{a.b.c}/*/x");
        assert_eq!(names(&template), ["user_id", "a.b.c"]);
        assert_eq!(template.to_string(), "/cart/{user_id}/items/{a.b.c}/*/x");
        assert_eq!(parse("/**").to_string(), "/**");
    }

    #[test]
    fn rejects_malformed_templates() {
        for (template, expected) in [
            ("cart", "must start with '/'"),
            ("/a/**/b", "'**' must be the last segment"),
            ("/{a=**}/b", "'**' must be the last segment"),
            ("/{a}/{a}", "appears twice"),
            ("/{a=b/{c}}", "cannot be nested"),
            ("/{a", "not closed"),
            ("/{1a}", "invalid field path"),
            ("/{a..b}", "invalid field path"),
            ("/a//b", "where a segment should start"),
            ("/a/", "empty segment"),
            ("/a:", "invalid verb"),
            ("/a:b/c", "invalid verb"),
            ("/a}", "unexpected '}'"),
        ] {
            let error = PathTemplate::parse(template).unwrap_err().0;
            assert!(error.contains(expected), "{template}: {error}");
        }
    }

    #[test]
    fn matches_literals_and_variables() {
        let template = "/cart/{user_id}/items/{product_id}/remove";
        assert_eq!(
            captures(template, "/cart/ann/items/apple/remove"),
            Some(vec!["ann".into(), "apple".into()])
        );
        assert_eq!(captures(template, "/cart/ann/items/apple"), None);
        assert_eq!(captures(template, "/cart/ann/items/apple/remove/x"), None);
        assert_eq!(captures(template, "/carts/ann/items/apple/remove"), None);
        assert_eq!(captures(template, "cart/ann/items/apple/remove"), None);
        // `*` matches an empty segment too (as the original proxy's did).
        assert_eq!(
            captures(template, "/cart//items/apple/remove"),
            Some(vec!["".into(), "apple".into()])
        );
    }

    #[test]
    fn decodes_captured_values_and_literals() {
        assert_eq!(
            captures("/a/{x}", "/a/caf%C3%A9%20au%2Flait"),
            Some(vec!["café au/lait".into()])
        );
        assert_eq!(
            captures("/caf%C3%A9/{x}", "/café/1"),
            Some(vec!["1".into()])
        );
        assert_eq!(
            captures("/café/{x}", "/caf%C3%A9/1"),
            Some(vec!["1".into()])
        );
        // A stray '%' is kept as it is.
        assert_eq!(captures("/a/{x}", "/a/100%"), Some(vec!["100%".into()]));
        let invalid = matches("/a/{x}", "/a/%FF").unwrap();
        assert!(invalid.unwrap_err().0.contains("UTF-8"));
    }

    #[test]
    fn multi_segment_variables_keep_encoded_slashes() {
        let template = "/v1/{name=shelves/*/books/**}";
        assert_eq!(
            captures(template, "/v1/shelves/s1/books/b%2F1/p%20q"),
            Some(vec!["shelves/s1/books/b%2F1/p q".into()])
        );
        assert_eq!(
            captures(template, "/v1/shelves/s1/books"),
            Some(vec!["shelves/s1/books".into()])
        );
        assert_eq!(captures(template, "/v1/shelves/s1"), None);
        assert_eq!(captures(template, "/v1/racks/s1/books/b"), None);
        assert_eq!(
            captures("/files/{path=**}", "/files/a/b/c"),
            Some(vec!["a/b/c".into()])
        );
        assert_eq!(
            captures("/{a}/{b=x/*}/c", "/1/x/2/c"),
            Some(vec!["1".into(), "x/2".into()])
        );
    }

    #[test]
    fn matches_verbs() {
        let template = "/v1/{name}:cancel";
        assert_eq!(
            captures(template, "/v1/op1:cancel"),
            Some(vec!["op1".into()])
        );
        assert_eq!(captures(template, "/v1/op1"), None);
        assert_eq!(captures(template, "/v1/op1:undo"), None);
        assert_eq!(
            captures("/v1/{name=**}:cancel", "/v1/a/b:cancel"),
            Some(vec!["a/b".into()])
        );
        assert_eq!(captures("/v1/x:cancel", "/v1/x:cancel"), Some(vec![]));
        // Without a verb in the template, a colon is part of the segment.
        assert_eq!(captures("/v1/{name}", "/v1/a:b"), Some(vec!["a:b".into()]));
    }

    #[test]
    fn more_specific_templates_sort_first() {
        let mut templates = [
            parse("/a/**"),
            parse("/a/{x}/b"),
            parse("/a/{x}"),
            parse("/a/special"),
            parse("/a/{x}:verb"),
        ];
        templates.sort_by_key(PathTemplate::specificity);
        let order: Vec<String> = templates.iter().map(ToString::to_string).collect();
        assert_eq!(
            order,
            ["/a/special", "/a/{x}:verb", "/a/{x}/b", "/a/{x}", "/a/**"]
        );
    }
}
