//! The autoscaler's errors.

/// What can go wrong in the autoscaler.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The settings do not make sense.
    #[error("invalid autoscaler settings: {0}")]
    InvalidSettings(String),
    /// The scaler could not read or change the deployment.
    #[error("scaler: {0}")]
    Scaler(String),
}
