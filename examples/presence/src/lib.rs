//! The Cloudstate presence example: whether a chat user is online.
//!
//! One CRDT entity per user, keyed by `user_id`, whose state is a [`Vote`]: each proxy node
//! votes "online" while at least one of the user's `Connect` calls is open on it, and the user
//! is online when at least one node votes yes.
//!
//! - `Connect(User) returns (stream Empty)`: a streamed command that never sends a message.
//!   While its stream is open this node votes yes; when the client cancels the call, the
//!   on-cancel callback withdraws the vote once the node's last connection of the user is
//!   gone.
//! - `Monitor(User) returns (stream OnlineStatus)`: a streamed command that answers the
//!   current status, then a new [`OnlineStatus`] each time "at least one
//!   vote is yes" changes (a connection here, or a vote that arrives from another node).
//!
//! Service `cloudstate.examples.chat.presence.Presence`, persistence id `presence`. HTTP:
//! `POST /presence/{user_id}/connect`, `GET /presence/{user_id}` (both streaming). Clients call
//! it through the proxy, e.g. with [`PresenceClient`], or from a browser with the web page
//! [`ui`] serves.

use cloudstate::crdt::{Vote, Votes};
use cloudstate::{CrdtEntityService, Failure, Reply, StreamedContext};

/// The presence service's protobuf types, its trait and calls, and the descriptor set reported
/// at discovery.
pub mod proto {
    cloudstate::include_protos!("cloudstate.examples.chat.presence");

    /// `presence.proto` and all its imports, options intact.
    pub const FILE_DESCRIPTOR_SET: &[u8] = cloudstate::include_descriptor_set!();
}

pub mod client;
pub mod ui;

pub use client::PresenceClient;
use proto::{OnlineStatus, User};

/// The persistence id the proxy keeps the votes under.
pub const PERSISTENCE_ID: &str = "presence";

/// A user's presence on this node: how many of their `Connect` calls are open here. The vote
/// itself is the entity's replicated state.
#[derive(Debug, Default)]
pub struct Presence {
    connections: u32,
}

impl proto::Presence for Presence {
    fn connect(
        &mut self,
        _: User,
        ctx: &mut StreamedContext<Self, ()>,
    ) -> Result<Reply<()>, Failure> {
        if !ctx.is_streamed() {
            return Err(Failure::failed_precondition(
                "Connect keeps a user online only as an open stream",
            ));
        }
        ctx.state_or_create::<Vote>()?.vote(true);
        self.connections += 1;
        ctx.on_cancel(|presence: &mut Presence, ctx| {
            presence.connections = presence.connections.saturating_sub(1);
            if presence.connections == 0 {
                // The state is a Vote: this handler created it, and its type never changes.
                if let Ok(Some(mut vote)) = ctx.state::<Vote>() {
                    vote.vote(false);
                }
            }
        });
        Ok(Reply::NoReply)
    }

    fn monitor(
        &mut self,
        _: User,
        ctx: &mut StreamedContext<Self, OnlineStatus>,
    ) -> Result<Reply<OnlineStatus>, Failure> {
        self.withdraw_stale_vote(ctx)?;
        let mut online = is_online(ctx.value::<Vote>()?);
        ctx.on_change(move |_: &mut Presence, change| {
            let now = is_online(change.value::<Vote>()?);
            if now == online {
                return Ok(Reply::NoReply);
            }
            online = now;
            Ok(OnlineStatus { online }.into())
        });
        Ok(OnlineStatus { online }.into())
    }
}

impl Presence {
    /// Withdraws a yes vote that no connection on this node backs: one left by an earlier
    /// instance of the entity on this node (the proxy restarted its stream, which ended the
    /// connections that had voted).
    fn withdraw_stale_vote(
        &self,
        ctx: &mut StreamedContext<Self, OnlineStatus>,
    ) -> Result<(), Failure> {
        if self.connections == 0
            && let Some(mut vote) = ctx.state::<Vote>()?
            && vote.self_vote()
        {
            vote.vote(false);
        }
        Ok(())
    }
}

/// Whether at least one node votes yes; nobody has when the entity has no vote yet.
fn is_online(votes: Option<Votes>) -> bool {
    votes.is_some_and(|votes| votes.at_least_one())
}

/// The presence entity's registration: persistence id `presence`.
pub fn entity() -> CrdtEntityService<Presence> {
    proto::presence::entity().persistence_id(PERSISTENCE_ID)
}

/// The user function serving presence, ready to
/// [`serve_from_env`](cloudstate::Server::serve_from_env).
///
/// # Errors
///
/// If the descriptor set and the entity disagree (a build problem).
pub fn server() -> Result<cloudstate::Server, cloudstate::Error> {
    Ok(cloudstate::Server::new(proto::FILE_DESCRIPTOR_SET)?
        .register(entity())?
        .service_info(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")))
}
