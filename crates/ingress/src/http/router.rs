//! Finds the binding of a request: by path template, then by HTTP method.

use std::sync::Arc;

use super::rules::Binding;
use super::template::{Captures, RequestPath};
use crate::Error;

/// Every binding of the served methods, most specific template first, each with what serves
/// it (`T`: the engine's route in the proxy).
pub(crate) struct Router<T> {
    entries: Vec<(Arc<Binding>, T)>,
}

/// A request's binding and the values of its path variables.
pub(crate) struct Matched<'a, T> {
    /// The binding.
    pub(crate) binding: &'a Arc<Binding>,
    /// What serves it.
    pub(crate) target: &'a T,
    /// The decoded values of the template's variables, in order.
    pub(crate) captures: Captures,
}

impl<T> Router<T> {
    /// A router over `bindings`, in declaration order. Overlapping templates are tried most
    /// specific first (literal segments before `*`, before `**`); among equally specific ones the
    /// first declared wins. Two bindings with the same HTTP method and the same template are an
    /// error.
    pub(crate) fn new(bindings: impl IntoIterator<Item = (Binding, T)>) -> Result<Self, Error> {
        let mut entries: Vec<(Arc<Binding>, T)> = Vec::new();
        for (binding, target) in bindings {
            if let Some((other, _)) = entries.iter().find(|(other, _)| {
                other.http_method == binding.http_method
                    && other.template.same_paths(&binding.template)
            }) {
                let http_method = binding
                    .http_method
                    .as_ref()
                    .map_or("*", http::Method::as_str);
                return Err(Error::HttpRule {
                    method: binding.method.clone(),
                    reason: format!(
                        "{http_method} {} is already bound to {} ({} {})",
                        binding.template, other.method, http_method, other.template
                    ),
                });
            }
            entries.push((Arc::new(binding), target));
        }
        // A stable sort keeps declaration order among equals; a specific HTTP method goes
        // before `*` on the same template.
        entries.sort_by_cached_key(|(binding, _)| {
            (
                binding.template.specificity(),
                binding.http_method.is_none(),
            )
        });
        Ok(Router { entries })
    }

    /// The binding for `method` and `path` (as received, percent-encoded).
    ///
    /// # Errors
    ///
    /// [`Error::NoRoute`] if no template matches the path, [`Error::MethodNotAllowed`] if some do
    /// but not with this method, [`Error::BadRequest`] if a path variable's encoding is invalid.
    pub(crate) fn find(&self, method: &http::Method, path: &str) -> Result<Matched<'_, T>, Error> {
        let no_route = || Error::NoRoute {
            method: method.to_string(),
            path: path.to_owned(),
        };
        let segments = RequestPath::parse(path).ok_or_else(no_route)?;
        let mut allowed: Vec<&str> = Vec::new();
        for (binding, target) in &self.entries {
            let Some(captures) = binding.template.matches(&segments) else {
                continue;
            };
            match &binding.http_method {
                Some(expected) if expected != method => {
                    if !allowed.contains(&expected.as_str()) {
                        allowed.push(expected.as_str());
                    }
                }
                _ => {
                    let captures = captures.map_err(|invalid| {
                        Error::BadRequest(format!("invalid path {path}: {}", invalid.0))
                    })?;
                    return Ok(Matched {
                        binding,
                        target,
                        captures,
                    });
                }
            }
        }
        if allowed.is_empty() {
            Err(no_route())
        } else {
            Err(Error::MethodNotAllowed {
                method: method.to_string(),
                path: path.to_owned(),
                allow: allowed.join(", "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::json::tests::{KITCHEN, pool};
    use crate::http::rules::bindings;
    use proptest::prelude::*;
    use std::sync::LazyLock;

    const SHOP: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/api/annotations.proto";
        import "kitchen.proto";
        service Shop {
            rpc Get(test.Kitchen) returns (test.Kitchen) {
                option (google.api.http) = {
                    get: "/kitchens/{text}"
                    additional_bindings { get: "/kitchens/special" }
                    additional_bindings { post: "/kitchens/{text}" body: "*" }
                    additional_bindings { get: "/files/{text=**}" }
                    additional_bindings { post: "/kitchens/{text}:cook" body: "*" }
                };
            }
            rpc Any(test.Kitchen) returns (test.Kitchen) {
                option (google.api.http).custom = { kind: "*" path: "/anything/{text}" };
            }
            rpc Default(test.Kitchen) returns (test.Kitchen);
        }
    "#;

    fn router(proto: &str) -> Result<Router<String>, Error> {
        let pool = pool(&[("kitchen.proto", KITCHEN), ("shop.proto", proto)]);
        let shop = pool.get_service_by_name("shop.Shop").unwrap();
        let mut all = Vec::new();
        for method in shop.methods() {
            for (index, binding) in bindings(&method)?.into_iter().enumerate() {
                all.push((binding, format!("{}#{index}", method.name())));
            }
        }
        Router::new(all)
    }

    /// The router of `SHOP`, compiled once.
    static SHOP_ROUTER: LazyLock<Router<String>> = LazyLock::new(|| router(SHOP).unwrap());

    fn find(method: &str, path: &str) -> Result<(String, Vec<String>), String> {
        let router = &*SHOP_ROUTER;
        let method = http::Method::from_bytes(method.as_bytes()).unwrap();
        router
            .find(&method, path)
            .map(|m| (m.target.clone(), m.captures))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn finds_bindings_by_path_and_method() {
        assert_eq!(
            find("GET", "/kitchens/k1").unwrap(),
            ("Get#0".into(), vec!["k1".into()])
        );
        assert_eq!(find("POST", "/kitchens/k1").unwrap().0, "Get#2");
        assert_eq!(
            find("GET", "/kitchens/special").unwrap(),
            ("Get#1".into(), vec![])
        );
        assert_eq!(find("POST", "/kitchens/special").unwrap().0, "Get#2");
        assert_eq!(
            find("POST", "/kitchens/k1:cook").unwrap(),
            ("Get#4".into(), vec!["k1".into()])
        );
        assert_eq!(find("GET", "/files/a/b%20c").unwrap().1, ["a/b c"]);
        assert_eq!(find("DELETE", "/anything/x").unwrap().0, "Any#0");
        assert_eq!(find("POST", "/shop.Shop/Default").unwrap().0, "Default#0");
    }

    #[test]
    fn tells_unknown_paths_from_wrong_methods() {
        let missing = find("GET", "/nowhere").unwrap_err();
        assert!(missing.contains("no HTTP rule"), "{missing}");
        let wrong = find("DELETE", "/kitchens/k1").unwrap_err();
        assert!(wrong.contains("GET, POST"), "{wrong}");
        let wrong = find("GET", "/shop.Shop/Default").unwrap_err();
        assert!(wrong.contains("POST"), "{wrong}");
        let bad = find("GET", "/kitchens/%FF").unwrap_err();
        assert!(bad.contains("UTF-8"), "{bad}");
    }

    #[test]
    fn rejects_duplicate_bindings() {
        let error = router(
            r#"syntax = "proto3";
            package shop;
            import "google/api/annotations.proto";
            import "kitchen.proto";
            service Shop {
                rpc A(test.Kitchen) returns (test.Kitchen) { option (google.api.http).get = "/k/{text}"; }
                rpc B(test.Kitchen) returns (test.Kitchen) { option (google.api.http).get = "/k/{i64}"; }
            }"#,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            error.contains("shop.Shop.B") && error.contains("already bound to shop.Shop.A"),
            "{error}"
        );
    }

    proptest! {
        /// Whatever the path and method, finding a binding never panics.
        #[test]
        fn never_panics_on_any_path(
            method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "X"]),
            segments in prop::collection::vec("[a-z%:/{}*.0-9A-F]{0,6}|kitchens|special|files", 0..6),
        ) {
            let path = format!("/{}", segments.join("/"));
            let router = &*SHOP_ROUTER;
            let method = http::Method::from_bytes(method.as_bytes()).unwrap();
            let _ = router.find(&method, &path);
            let _ = router.find(&method, &segments.concat());
        }
    }
}
