//! Entities, commands and forwards: the engine's tunables.

use clap::Args;
use cloudstate_engine::EngineConfig;

use super::{ByteSize, HumanDuration};

/// The engine's settings; defaults are [`EngineConfig::default`]'s.
#[derive(Debug, Args)]
#[command(next_help_heading = "Entities and commands")]
pub struct EngineOptions {
    /// Longest a command may take, from arrival to reply (`DEADLINE_EXCEEDED` after).
    #[arg(long, env = "COMMAND_TIMEOUT", default_value_t = HumanDuration(EngineConfig::default().command_timeout))]
    command_timeout: HumanDuration,

    /// Idle time after which an entity is unloaded from memory, unless the user function
    /// declares its own.
    #[arg(long, env = "PASSIVATION_TIMEOUT", default_value_t = HumanDuration(EngineConfig::default().passivation_timeout))]
    passivation_timeout: HumanDuration,

    /// Commands that may wait for one entity before new ones are refused (`RESOURCE_EXHAUSTED`).
    #[arg(
        long,
        env = "ENTITY_MAILBOX_CAPACITY",
        default_value_t = EngineConfig::default().mailbox_capacity as u32,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    entity_mailbox_capacity: u32,

    /// Longest chain of forwards and side effects one call may cause.
    #[arg(long, env = "MAX_CHAIN_LENGTH", default_value_t = EngineConfig::default().max_chain_length)]
    max_chain_length: u32,

    /// Largest message exchanged with clients and with the user function, in bytes or with a
    /// unit (`4MiB`): larger requests are refused (`RESOURCE_EXHAUSTED`, HTTP 413), and so is a
    /// command whose reply, event, snapshot or value the user function could not be sent back
    /// (`FAILED_PRECONDITION`, nothing stored). The user function must accept messages of this
    /// size (gRPC's default is 4MiB; the Rust SDK's `Server::max_message_size`).
    #[arg(long, env = "MAX_MESSAGE_SIZE", default_value_t = ByteSize(EngineConfig::default().max_message_size))]
    max_message_size: ByteSize,
}

impl EngineOptions {
    /// The engine's configuration these settings describe.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            command_timeout: self.command_timeout.into(),
            passivation_timeout: self.passivation_timeout.into(),
            mailbox_capacity: self.entity_mailbox_capacity as usize,
            max_chain_length: self.max_chain_length,
            max_message_size: self.max_message_size.0,
        }
    }
}
