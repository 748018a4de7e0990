//! Running user code so that its panics become failures instead of taking the stream down.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

use futures_util::FutureExt;

/// Runs user code, turning a panic into a description of it.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| describe(what, payload.as_ref()))
}

/// Awaits user code, turning a panic into a description of it.
pub(crate) async fn guard_future<F: Future>(what: &str, future: F) -> Result<F::Output, String> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|payload| describe(what, payload.as_ref()))
}

/// `<what> panicked: <message>`.
pub(crate) fn describe(what: &str, payload: &(dyn Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload");
    format!("{what} panicked: {message}")
}
