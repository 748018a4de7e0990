//! `cloudstate-operator`: runs the Kubernetes operator, or writes its install manifests.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cloudstate_operator::reconcile::OperatorSettings;
use cloudstate_operator::{controller, manifests};

/// The Cloudstate Kubernetes operator.
#[derive(Debug, Parser)]
#[command(name = "cloudstate-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the operator with the in-cluster (or kubeconfig) credentials.
    Run {
        /// The proxy image injected into services that do not name one.
        #[arg(long, env = "PROXY_IMAGE", default_value_t = manifests::proxy_image())]
        proxy_image: String,
        /// Watch only this namespace (default: all).
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
    },
    /// Writes the CRDs and the install manifests into a directory.
    Manifests {
        /// The directory (created if missing).
        #[arg(default_value = "deploy")]
        dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Manifests { dir } => {
            manifests::write(&dir)?;
            println!(
                "wrote {}/crds.yaml and {}/operator.yaml",
                dir.display(),
                dir.display()
            );
        }
        Command::Run {
            proxy_image,
            namespace,
        } => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API")?;
            tracing::info!(%proxy_image, namespace = ?namespace, "cloudstate-operator running");
            controller::run(client, namespace, OperatorSettings { proxy_image }).await;
        }
    }
    Ok(())
}
