//! Connections to the target and the calls made over them.
//!
//! The client path is kept lean so that the load generator, not the server, is never what
//! sets the limit of a run:
//! - gRPC ([`grpc`]) speaks HTTP/2 through `h2` directly. Each connection is driven by one task,
//!   its [`Home`], and the closed-loop clients spread over that connection run inside the same
//!   task: a call wakes no other task, crosses no buffer or channel, and needs no per-call
//!   `ready()`.
//! - HTTP/1.1 JSON ([`http`]) writes each request prepared once per key (head and body) to its
//!   own keep-alive connection and parses the answer with `httparse`, in the client's task.
//! - [`tonic`] is the reference: a minimal client written the way tonic is normally used
//!   (`Channel`, `Grpc::ready`, `Grpc::unary`), for the echo baseline's comparison only.
//!
//! Every connection is opened before the run starts, so the hot path never waits for one to be
//! set up.

pub mod grpc;
pub mod http;
pub mod tonic;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use self::grpc::{Framed, GrpcClient, GrpcPool, GrpcStream};
pub use self::http::{HttpClient, HttpPool, HttpRequest};

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call failed, as counted in the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The server, or the gRPC stack on either side, ended the call with this status.
    Status(::tonic::Code),
    /// No answer within the client's timeout (the command may still have been applied).
    Timeout,
    /// The server answered, but not with what the workload expected.
    BadReply,
}

impl CallError {
    /// Number of distinct error kinds: the 17 gRPC codes, then the client-side kinds.
    pub const KINDS: usize = 19;

    /// A dense index in `0..KINDS`, to count errors in a plain array.
    pub fn index(self) -> usize {
        match self {
            CallError::Status(code) => code as usize,
            CallError::Timeout => 17,
            CallError::BadReply => 18,
        }
    }

    /// The name of the kind with this index, as shown in the results (`Unavailable`,
    /// `ClientTimeout`, ...).
    pub fn name_of(index: usize) -> String {
        match index {
            17 => "ClientTimeout".to_owned(),
            18 => "BadReply".to_owned(),
            code => format!("{:?}", ::tonic::Code::from_i32(code as i32)),
        }
    }
}

impl From<::tonic::Status> for CallError {
    fn from(status: ::tonic::Status) -> Self {
        CallError::Status(status.code())
    }
}

/// What a failed call reports when the connection failed.
pub const UNAVAILABLE: CallError = CallError::Status(::tonic::Code::Unavailable);

/// A future run in a connection's task.
type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The task that drives one connection, where the clients of that connection run too.
///
/// A client whose loop runs in the task of its connection writes its request and is woken by
/// its answer in that same task: no wake-up crosses tasks or threads.
#[derive(Debug, Clone)]
pub struct Home {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Home {
    /// A home for the connection future `connection`: spawns the task that drives it and runs
    /// whatever [`Home::run`] is given beside it. The task ends once the connection has ended,
    /// every `Home` handle is gone and every job has finished.
    pub fn spawn(connection: impl Future<Output = ()> + Send + 'static) -> Home {
        let (jobs, receiver) = mpsc::unbounded_channel();
        tokio::spawn(drive(connection, receiver));
        Home { jobs }
    }

    /// Runs `future` in the connection's task; the receiver gets its output. If the task is
    /// gone, the future runs in a task of its own.
    pub fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (sender, receiver) = oneshot::channel();
        let job: Job = Box::pin(async move {
            let _ = sender.send(future.await);
        });
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(job) {
            tokio::spawn(job);
        }
        receiver
    }
}

/// Polls the connection and the jobs in one task until all are done.
async fn drive(connection: impl Future<Output = ()>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    use futures_util::StreamExt;
    let mut running = futures_util::stream::FuturesUnordered::new();
    let mut connection = std::pin::pin!(connection);
    let (mut connected, mut accepting) = (true, true);
    loop {
        tokio::select! {
            biased;
            () = &mut connection, if connected => connected = false,
            job = jobs.recv(), if accepting => match job {
                Some(job) => running.push(job),
                None => accepting = false,
            },
            Some(()) = running.next(), if !running.is_empty() => {}
            else => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_have_distinct_indices_and_names() {
        let mut names = std::collections::HashSet::new();
        for index in 0..CallError::KINDS {
            assert!(names.insert(CallError::name_of(index)));
        }
        assert_eq!(CallError::Status(::tonic::Code::Unavailable).index(), 14);
        assert_eq!(CallError::name_of(14), "Unavailable");
        assert_eq!(
            CallError::name_of(CallError::Timeout.index()),
            "ClientTimeout"
        );
        assert!(CallError::BadReply.index() < CallError::KINDS);
    }

    #[tokio::test]
    async fn jobs_run_beside_the_connection_and_after_it_ends() {
        let (end, ended) = oneshot::channel::<()>();
        let home = Home::spawn(async move {
            let _ = ended.await;
        });
        assert_eq!(home.run(async { 1 }).await.unwrap(), 1);
        end.send(()).unwrap();
        // The connection has ended; the task still runs what it is given.
        assert_eq!(home.run(async { 2 }).await.unwrap(), 2);
    }
}
