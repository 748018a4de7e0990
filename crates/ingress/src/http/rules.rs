//! `google.api.http` rules: read from the method options, checked, and compiled into
//! [`Binding`]s once, when discovery is done.
//!
//! A rule that cannot be served is an error naming the method, so that the proxy refuses the
//! user function at start-up rather than failing requests later. A method without a rule gets
//! the default binding `POST /<package.Service>/<Method>` with body `*` (the original proxy's,
//! since v0.6).

use cloudstate_engine::wire::{FieldReader, WireValue};
use cloudstate_protocol::google_api::{HttpRule, http_rule::Pattern};
use cloudstate_protocol::option_number;
use prost::Message;
use prost_reflect::{FieldDescriptor, MessageDescriptor, MethodDescriptor};

use super::json::FieldPath;
use super::template::PathTemplate;
use crate::Error;

/// The message type whose replies are sent as raw bytes with their own content type.
const HTTP_BODY: &str = "google.api.HttpBody";

/// One way to call a method over HTTP: an HTTP method and a path template, and how the request
/// and reply map to JSON.
#[derive(Debug)]
pub(crate) struct Binding {
    /// The method's full name, `package.Service.Method`, for messages.
    pub(crate) method: String,
    /// The HTTP method; `None` accepts any (`custom` with kind `*`).
    pub(crate) http_method: Option<http::Method>,
    /// The path template.
    pub(crate) template: PathTemplate,
    /// The field each template variable sets, in template order.
    pub(crate) variables: Vec<FieldPath>,
    /// Where the request body goes.
    pub(crate) body: Body,
    /// The method's input type.
    pub(crate) input: MessageDescriptor,
    /// What the HTTP response holds.
    pub(crate) output: Output,
    /// Whether the method takes a stream of requests (HTTP sends one).
    pub(crate) client_streaming: bool,
    /// Whether the method replies with a stream (sent as newline-delimited JSON).
    pub(crate) server_streaming: bool,
}

/// Where the JSON request body goes (`body` of the rule).
#[derive(Debug)]
pub(crate) enum Body {
    /// `body` empty: no body; fields come from the path and the query string.
    None,
    /// `body: "*"`: the whole request message; the path fills in the rest; no query string.
    Whole,
    /// `body: "<field>"`: that top-level field; the path and the query string fill in the rest.
    Field(FieldDescriptor),
}

/// What the HTTP response holds (`response_body` of the rule, and the output type).
#[derive(Debug)]
pub(crate) enum Output {
    /// The whole reply as JSON.
    Message(MessageDescriptor),
    /// One top-level field of the reply as JSON.
    Field(MessageDescriptor, FieldDescriptor),
    /// A `google.api.HttpBody` reply: its `data`, with its `content_type`.
    HttpBody(MessageDescriptor),
}

impl Output {
    /// The reply's message type.
    pub(crate) fn message(&self) -> &MessageDescriptor {
        match self {
            Output::Message(message) | Output::Field(message, _) | Output::HttpBody(message) => {
                message
            }
        }
    }
}

/// The bindings of `method`: its rule and the rule's additional bindings, or the default
/// binding if it has no rule.
pub(crate) fn bindings(method: &MethodDescriptor) -> Result<Vec<Binding>, Error> {
    let invalid = |reason: String| Error::HttpRule {
        method: method.full_name().to_owned(),
        reason,
    };
    let Some(rule) = http_rule(method).map_err(invalid)? else {
        let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
        let template = PathTemplate::parse(&path).map_err(|e| invalid(e.0))?;
        let default = binding(method, Some(http::Method::POST), template, "*", "");
        return Ok(vec![default.map_err(invalid)?]);
    };
    let mut bindings = vec![compile(method, &rule).map_err(invalid)?];
    for additional in &rule.additional_bindings {
        if !additional.additional_bindings.is_empty() {
            return Err(invalid(
                "an additional binding has additional bindings of its own (only one level is \
                 allowed)"
                    .into(),
            ));
        }
        bindings.push(compile(method, additional).map_err(invalid)?);
    }
    Ok(bindings)
}

/// Reads the `(google.api.http)` option of `method` from its encoded options, so that it is
/// found whether or not the descriptor pool knows the extension.
fn http_rule(method: &MethodDescriptor) -> Result<Option<HttpRule>, String> {
    let options = method.options().encode_to_vec();
    let mut rule: Option<HttpRule> = None;
    for field in FieldReader::new(&options) {
        let (number, value, _) =
            field.map_err(|error| format!("the method options do not decode: {error}"))?;
        if number != option_number::HTTP_RULE {
            continue;
        }
        let WireValue::LengthDelimited(bytes) = value else {
            return Err("(google.api.http) is not a message".into());
        };
        // Repeated occurrences of a message field merge, as protobuf parsers do.
        rule.get_or_insert_default()
            .merge(bytes)
            .map_err(|error| format!("(google.api.http) does not decode: {error}"))?;
    }
    Ok(rule)
}

/// Checks one rule (without its additional bindings) and compiles it.
fn compile(method: &MethodDescriptor, rule: &HttpRule) -> Result<Binding, String> {
    if !rule.selector.is_empty() && rule.selector != method.full_name() {
        return Err(format!(
            "the rule's selector {:?} names another method",
            rule.selector
        ));
    }
    let (http_method, path) = match &rule.pattern {
        None => {
            return Err("the rule has no pattern (get, put, post, delete, patch or custom)".into());
        }
        Some(Pattern::Get(path)) => (Some(http::Method::GET), path),
        Some(Pattern::Put(path)) => (Some(http::Method::PUT), path),
        Some(Pattern::Post(path)) => (Some(http::Method::POST), path),
        Some(Pattern::Delete(path)) => (Some(http::Method::DELETE), path),
        Some(Pattern::Patch(path)) => (Some(http::Method::PATCH), path),
        Some(Pattern::Custom(custom)) if custom.kind == "*" => (None, &custom.path),
        Some(Pattern::Custom(custom)) => {
            let method = http::Method::from_bytes(custom.kind.as_bytes())
                .map_err(|_| format!("custom kind {:?} is not an HTTP method", custom.kind))?;
            (Some(method), &custom.path)
        }
    };
    let template = PathTemplate::parse(path).map_err(|error| error.0)?;
    let describe = |reason: String| {
        let http_method = http_method.as_ref().map_or("*", http::Method::as_str);
        format!("{http_method} {path}: {reason}")
    };
    binding(
        method,
        http_method.clone(),
        template,
        &rule.body,
        &rule.response_body,
    )
    .map_err(describe)
}

/// Resolves the fields a binding names and builds it.
fn binding(
    method: &MethodDescriptor,
    http_method: Option<http::Method>,
    template: PathTemplate,
    body: &str,
    response_body: &str,
) -> Result<Binding, String> {
    let input = method.input();
    let output = method.output();
    let variables = template
        .variables()
        .iter()
        .map(|variable| {
            let path = FieldPath::resolve(&input, &variable.field_path)
                .map_err(|reason| format!("path variable {{{}}}: {reason}", variable.name()))?;
            if path.is_repeated() {
                return Err(format!(
                    "path variable {{{}}}: the field is repeated",
                    variable.name()
                ));
            }
            Ok(path)
        })
        .collect::<Result<Vec<_>, String>>()?;
    let body = match body {
        "" => Body::None,
        "*" => Body::Whole,
        field => Body::Field(
            top_level_field(&input, field).map_err(|reason| format!("body {field:?}: {reason}"))?,
        ),
    };
    let output = match response_body {
        "" if output.full_name() == HTTP_BODY => Output::HttpBody(output),
        "" => Output::Message(output),
        field => {
            let selected = top_level_field(&output, field)
                .map_err(|reason| format!("response_body {field:?}: {reason}"))?;
            Output::Field(output, selected)
        }
    };
    Ok(Binding {
        method: method.full_name().to_owned(),
        http_method,
        template,
        variables,
        body,
        input,
        output,
        client_streaming: method.is_client_streaming(),
        server_streaming: method.is_server_streaming(),
    })
}

/// The field `name` of `message` (by name or JSON name; no dotted paths, as the specification
/// requires for `body` and `response_body`).
fn top_level_field(message: &MessageDescriptor, name: &str) -> Result<FieldDescriptor, String> {
    message
        .get_field_by_name(name)
        .or_else(|| message.get_field_by_json_name(name))
        .ok_or_else(|| format!("{} has no field {name:?}", message.full_name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::json::tests::{KITCHEN, pool};

    fn service(rpcs: &str) -> String {
        format!(
            r#"
            syntax = "proto3";
            package shop;
            import "google/api/annotations.proto";
            import "google/api/httpbody.proto";
            import "google/protobuf/empty.proto";
            import "kitchen.proto";
            service Shop {{ {rpcs} }}
            "#
        )
    }

    fn compile_rpcs(rpcs: &str) -> Result<Vec<Binding>, Error> {
        let service = service(rpcs);
        let pool = pool(&[("kitchen.proto", KITCHEN), ("shop.proto", &service)]);
        let shop = pool.get_service_by_name("shop.Shop").unwrap();
        let mut all = Vec::new();
        for method in shop.methods() {
            all.extend(bindings(&method)?);
        }
        Ok(all)
    }

    fn error(rpcs: &str) -> String {
        compile_rpcs(rpcs).unwrap_err().to_string()
    }

    #[test]
    fn compiles_every_rule_shape() {
        let bindings = compile_rpcs(
            r#"
            rpc Get(test.Kitchen) returns (test.Kitchen) {
                option (google.api.http) = {
                    get: "/kitchens/{text}/{inner.deeper.n}"
                    additional_bindings { post: "/kitchens/{text}" body: "*" }
                    additional_bindings { put: "/kitchens/{text}/inner" body: "inner" response_body: "tags" }
                    additional_bindings { custom { kind: "*" path: "/any/{i64}" } }
                    additional_bindings { custom { kind: "SEARCH" path: "/search" } }
                    additional_bindings { delete: "/kitchens/{text}" }
                    additional_bindings { patch: "/kitchens/{text}:touch" body: "inner" }
                };
            }
            rpc Raw(test.Kitchen) returns (google.api.HttpBody) {
                option (google.api.http).get = "/raw/{name_value}";
            }
            rpc Plain(google.protobuf.Empty) returns (stream google.protobuf.Empty);
            "#,
        )
        .unwrap();
        let shapes: Vec<String> = bindings
            .iter()
            .map(|b| {
                let method = b.http_method.as_ref().map_or("*", http::Method::as_str);
                format!("{method} {} {}", b.template, b.method)
            })
            .collect();
        assert_eq!(
            shapes,
            [
                "GET /kitchens/{text}/{inner.deeper.n} shop.Shop.Get",
                "POST /kitchens/{text} shop.Shop.Get",
                "PUT /kitchens/{text}/inner shop.Shop.Get",
                "* /any/{i64} shop.Shop.Get",
                "SEARCH /search shop.Shop.Get",
                "DELETE /kitchens/{text} shop.Shop.Get",
                "PATCH /kitchens/{text}:touch shop.Shop.Get",
                "GET /raw/{name_value} shop.Shop.Raw",
                "POST /shop.Shop/Plain shop.Shop.Plain",
            ]
        );
        assert!(matches!(bindings[0].body, Body::None));
        assert!(matches!(bindings[1].body, Body::Whole));
        assert!(matches!(&bindings[2].body, Body::Field(f) if f.name() == "inner"));
        assert!(matches!(&bindings[2].output, Output::Field(_, f) if f.name() == "tags"));
        assert!(matches!(bindings[7].output, Output::HttpBody(_)));
        assert!(matches!(bindings[8].body, Body::Whole));
        assert!(bindings[8].server_streaming && !bindings[8].client_streaming);
    }

    #[test]
    fn rejects_bad_rules_naming_the_method() {
        let rule = |option: &str| {
            format!(
                "rpc Bad(test.Kitchen) returns (test.Kitchen) {{ option (google.api.http) = {{ {option} }}; }}"
            )
        };
        for (option, expected) in [
            (
                r#"get: "/a/{missing}""#,
                "path variable {missing}: test.Kitchen has no field \"missing\"",
            ),
            (
                r#"get: "/a/{tags}""#,
                "path variable {tags}: the field is repeated",
            ),
            (r#"get: "/a/{inner}""#, "is a message"),
            (r#"get: "/a/{inners.label}""#, "repeated"),
            (r#"get: "/a/**/b""#, "'**' must be the last segment"),
            (r#"get: "a""#, "must start with '/'"),
            (
                r#"post: "/a" body: "missing""#,
                "body \"missing\": test.Kitchen has no field",
            ),
            (r#"post: "/a" body: "inner.label""#, "body \"inner.label\""),
            (
                r#"get: "/a" response_body: "nope""#,
                "response_body \"nope\"",
            ),
            (r#"body: "*""#, "no pattern"),
            (
                r#"selector: "other.Method" get: "/a""#,
                "names another method",
            ),
            (
                r#"custom { kind: "NOT A METHOD" path: "/a" }"#,
                "not an HTTP method",
            ),
            (
                r#"get: "/a" additional_bindings { get: "/b" additional_bindings { get: "/c" } }"#,
                "only one level",
            ),
            (r#"get: "/a/{text}/{text}""#, "appears twice"),
        ] {
            let message = error(&rule(option));
            assert!(
                message.contains("invalid HTTP rule for shop.Shop.Bad")
                    && message.contains(expected),
                "{option}: {message}"
            );
        }
    }

    #[test]
    fn accepts_its_own_selector() {
        let bindings = compile_rpcs(
            r#"rpc Get(test.Kitchen) returns (test.Kitchen) {
                option (google.api.http) = { selector: "shop.Shop.Get" get: "/a" };
            }"#,
        )
        .unwrap();
        assert_eq!(bindings.len(), 1);
    }
}
