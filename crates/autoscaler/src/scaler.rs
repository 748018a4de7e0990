//! Scalers carry out the autoscaler's decisions.

use async_trait::async_trait;

use crate::{Deployment, Error};

/// Reads and changes the number of nodes. Implementations: [`LogScaler`] (only logs, the
/// default) and [`KubernetesScaler`](crate::KubernetesScaler), which sets a StatefulService's
/// replicas through its scale subresource.
#[async_trait]
pub trait Scaler: Send + Sync + 'static {
    /// The deployment running the nodes, if this scaler knows one.
    async fn deployment(&self) -> Result<Option<Deployment>, Error>;

    /// Asks for `nodes` nodes.
    async fn scale(&self, nodes: u32) -> Result<(), Error>;
}

/// A scaler that logs each decision and changes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogScaler;

#[async_trait]
impl Scaler for LogScaler {
    async fn deployment(&self) -> Result<Option<Deployment>, Error> {
        Ok(None)
    }

    async fn scale(&self, nodes: u32) -> Result<(), Error> {
        tracing::info!(nodes, "autoscaler: would scale (log-only scaler)");
        Ok(())
    }
}
