//! CORS (cross-origin resource sharing) on the proxy's port, off unless origins are allowed
//! (`--cors-allowed-origins`): lets a web page from another origin call the HTTP/JSON API and
//! read its (streamed) responses. Preflight requests (`OPTIONS` with
//! `Access-Control-Request-Method`) from an allowed origin are answered here and never reach a
//! route; responses to allowed origins carry `Access-Control-Allow-Origin` and expose the
//! headers a client may want to read. Requests from other origins are served as before, without
//! CORS headers, so the browser withholds the response from the page.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// Which origins may call the proxy from a browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`*`).
    Any,
    /// Exactly these origins (`scheme://host[:port]`).
    List(Vec<String>),
}

impl FromStr for CorsOrigins {
    type Err = String;

    /// `*`, or a comma-separated list of origins such as `http://localhost:8000`.
    fn from_str(value: &str) -> Result<Self, String> {
        if value.trim() == "*" {
            return Ok(CorsOrigins::Any);
        }
        let mut origins = Vec::new();
        for origin in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let Some((scheme, rest)) = origin.split_once("://") else {
                return Err(format!(
                    "`{origin}` is not an origin like http://localhost:8000 (scheme://host[:port])"
                ));
            };
            if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "`{origin}` is not an origin like http://localhost:8000 (scheme://host[:port], \
                     no path)"
                ));
            }
            if HeaderValue::from_str(origin).is_err() {
                return Err(format!(
                    "`{origin}` contains characters an origin cannot have"
                ));
            }
            origins.push(origin.trim_end_matches('/').to_owned());
        }
        if origins.is_empty() {
            return Err("name at least one origin, or `*` for any".into());
        }
        Ok(CorsOrigins::List(origins))
    }
}

impl fmt::Display for CorsOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorsOrigins::Any => f.write_str("*"),
            CorsOrigins::List(origins) => f.write_str(&origins.join(",")),
        }
    }
}

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The layer that answers preflights and adds CORS headers for `origins`.
pub(crate) fn layer(origins: &CorsOrigins) -> CorsLayer {
    let allow_origin = match origins {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(origins) => AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        ),
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            HeaderName::from_static("content-type"),
            HeaderName::from_static("allow"),
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
        ])
        .max_age(PREFLIGHT_MAX_AGE)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use cloudstate_store::MemoryStore;
    use prometheus_client::registry::Registry;
    use tower::ServiceExt;

    use super::*;
    use crate::Ingress;

    fn ingress() -> Ingress {
        Ingress::new(Arc::new(MemoryStore::new()), Arc::new(Registry::default()))
    }

    fn preflight(origin: &str) -> Request<Body> {
        Request::options("/presence/ann/connect")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap()
    }

    fn get_live(origin: &str) -> Request<Body> {
        Request::get("/live")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn origins_are_a_list_or_any() {
        assert_eq!("*".parse(), Ok(CorsOrigins::Any));
        assert_eq!(
            "http://localhost:8000, https://chat.example.com".parse(),
            Ok(CorsOrigins::List(vec![
                "http://localhost:8000".into(),
                "https://chat.example.com".into()
            ]))
        );
        for bad in [
            "",
            ",",
            "localhost:8000",
            "http://",
            "ftp://x",
            "http://x/page",
        ] {
            assert!(bad.parse::<CorsOrigins>().is_err(), "{bad:?} was accepted");
        }
        let list: CorsOrigins = "http://a:1,http://b:2".parse().unwrap();
        assert_eq!(list.to_string().parse(), Ok(list));
    }

    #[tokio::test]
    async fn preflights_of_allowed_origins_are_answered_and_responses_carry_cors_headers() {
        let origins = "http://127.0.0.1:8000".parse().unwrap();
        let router = ingress().with_cors(origins).router();

        let response = router
            .clone()
            .oneshot(preflight("http://127.0.0.1:8000"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://127.0.0.1:8000"
        );
        let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap();
        assert!(methods.contains("POST"), "{methods}");
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_MAX_AGE], "600");

        let response = router
            .clone()
            .oneshot(get_live("http://127.0.0.1:8000"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://127.0.0.1:8000"
        );
        let exposed = response.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap();
        assert!(exposed.contains("grpc-status"), "{exposed}");

        // Another origin gets no CORS headers: the browser keeps the response from its page.
        for request in [
            preflight("http://evil.example"),
            get_live("http://evil.example"),
        ] {
            let response = router.clone().oneshot(request).await.unwrap();
            assert!(
                !response
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
                "{:?}",
                response.headers()
            );
        }
    }

    #[tokio::test]
    async fn any_origin_is_allowed_with_a_star() {
        let router = ingress().with_cors(CorsOrigins::Any).router();
        let response = router.oneshot(get_live("http://x.example")).await.unwrap();
        assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    #[tokio::test]
    async fn cors_is_off_by_default() {
        let router = ingress().router();
        let response = router
            .clone()
            .oneshot(preflight("http://127.0.0.1:8000"))
            .await
            .unwrap();
        assert!(
            !response
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
        let response = router
            .oneshot(get_live("http://127.0.0.1:8000"))
            .await
            .unwrap();
        assert!(
            !response
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
    }
}
