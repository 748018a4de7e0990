//! The TCK's error type.

use std::fmt::Display;

/// Why a case did not pass, or the TCK could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An expectation of a case was not met: the system under test is wrong.
    #[error("{0}")]
    Check(String),
    /// The case cannot run in this configuration (a service the user function does not
    /// serve, a feature not built yet, a process the runner was not given).
    #[error("{0}")]
    Pending(String),
    /// Starting or reaching a process, or binding the relay, failed.
    #[error("setup: {0}")]
    Setup(String),
    /// An I/O error of the runner itself.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Turns any error into a failed expectation, saying what was being done.
pub trait CheckExt<T> {
    /// `Err(e)` becomes [`Error::Check`] with `what` and the error's text.
    fn check(self, what: &str) -> Result<T, Error>;
}

impl<T, E: Display> CheckExt<T> for Result<T, E> {
    fn check(self, what: &str) -> Result<T, Error> {
        self.map_err(|error| Error::Check(format!("{what}: {error}")))
    }
}

/// Fails with `message` unless `condition` holds.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), Error> {
    if condition {
        Ok(())
    } else {
        Err(Error::Check(message()))
    }
}

/// Fails unless `actual == expected`, printing both.
pub fn ensure_eq<T: PartialEq + std::fmt::Debug>(
    actual: &T,
    expected: &T,
    what: &str,
) -> Result<(), Error> {
    ensure(actual == expected, || {
        format!("{what}: expected\n    {expected:?}\n  but got\n    {actual:?}")
    })
}
