//! Presence through the SDK's testkit: one user's entity on one node, with votes from other
//! nodes delivered as deltas.

use cloudstate::Code;
use cloudstate::crdt::Votes;
use cloudstate::testkit::{ClientAction, CrdtTestKit, deltas};
use presence::proto::{self, OnlineStatus, User};
use presence::{Presence, entity};

fn user() -> User {
    User {
        user_id: "ann".into(),
    }
}

fn kit() -> CrdtTestKit<Presence> {
    CrdtTestKit::new(entity(), "ann")
}

fn status(online: bool) -> OnlineStatus {
    OnlineStatus { online }
}

/// The statuses stream `command_id` has sent since its first message.
fn statuses(kit: &CrdtTestKit<Presence>, command_id: i64) -> Vec<bool> {
    kit.stream(command_id)
        .iter()
        .map(|message| message.reply::<OnlineStatus>().unwrap().online)
        .collect()
}

#[test]
fn two_monitors_see_a_connect_and_a_disconnect() {
    let mut kit = kit();
    let first = kit
        .streamed_command(proto::presence::monitor(user()))
        .unwrap();
    let second = kit
        .streamed_command(proto::presence::monitor(user()))
        .unwrap();
    for monitor in [&first, &second] {
        assert!(monitor.streamed());
        assert_eq!(monitor.reply::<OnlineStatus>().unwrap(), status(false));
        // Nobody voted yet: the entity has no state, and monitoring does not create one.
        assert_eq!(monitor.state_action(), None);
    }

    let connect = kit
        .streamed_command(proto::presence::connect(user()))
        .unwrap();
    assert!(connect.streamed());
    assert_eq!(connect.action(), &ClientAction::NoReply);
    assert_eq!(connect.delta(), Some(&deltas::vote(true, 0, 0)));
    let pushed: Vec<_> = connect
        .streamed_messages()
        .iter()
        .map(|message| {
            (
                message.command_id(),
                message.reply::<OnlineStatus>().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pushed,
        [
            (first.command_id(), status(true)),
            (second.command_id(), status(true))
        ]
    );

    let disconnect = kit.cancel(connect.command_id()).unwrap();
    assert_eq!(disconnect.delta(), Some(&deltas::vote(false, 0, 0)));
    assert_eq!(disconnect.streamed_messages().len(), 2);
    for monitor in [&first, &second] {
        assert_eq!(statuses(&kit, monitor.command_id()), [true, false]);
    }
    assert_eq!(
        kit.open_streams(),
        [first.command_id(), second.command_id()]
    );
}

#[test]
fn cancelling_the_last_connection_withdraws_the_vote() {
    let mut kit = kit();
    let one = kit
        .streamed_command(proto::presence::connect(user()))
        .unwrap();
    let two = kit
        .streamed_command(proto::presence::connect(user()))
        .unwrap();
    // The node already votes yes: the second connection changes nothing.
    assert_eq!(two.state_action(), None);
    assert!(
        kit.value::<cloudstate::crdt::Vote>()
            .unwrap()
            .unwrap()
            .self_vote
    );

    let first_gone = kit.cancel(one.command_id()).unwrap();
    assert_eq!(first_gone.state_action(), None);
    let votes = kit.value::<cloudstate::crdt::Vote>().unwrap().unwrap();
    assert!(votes.self_vote);

    let second_gone = kit.cancel(two.command_id()).unwrap();
    assert_eq!(second_gone.delta(), Some(&deltas::vote(false, 0, 0)));
    assert_eq!(
        kit.value::<cloudstate::crdt::Vote>().unwrap(),
        Some(Votes {
            self_vote: false,
            votes_for: 0,
            total_voters: 1
        })
    );
    assert!(kit.open_streams().is_empty());
}

#[test]
fn votes_of_other_nodes_reach_the_monitors() {
    let mut kit = kit();
    let monitor = kit
        .streamed_command(proto::presence::monitor(user()))
        .unwrap();
    // Another node votes yes; this one does not.
    let pushed = kit.delta(deltas::vote(false, 1, 2)).unwrap();
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].reply::<OnlineStatus>().unwrap(), status(true));

    // A local connection changes this node's vote, but not whether the user is online.
    let connect = kit
        .streamed_command(proto::presence::connect(user()))
        .unwrap();
    assert_eq!(connect.delta(), Some(&deltas::vote(true, 0, 0)));
    assert!(connect.streamed_messages().is_empty());
    let votes = kit.value::<cloudstate::crdt::Vote>().unwrap().unwrap();
    assert_eq!((votes.votes_for, votes.total_voters), (2, 2));

    // The other node's user goes away; ours is still connected.
    assert!(kit.delta(deltas::vote(true, 1, 2)).unwrap().is_empty());
    kit.cancel(connect.command_id()).unwrap();
    assert_eq!(statuses(&kit, monitor.command_id()), [true, false]);

    // A monitor that starts late answers the current status first.
    kit.delta(deltas::vote(false, 1, 3)).unwrap();
    let late = kit
        .streamed_command(proto::presence::monitor(user()))
        .unwrap();
    assert_eq!(late.reply::<OnlineStatus>().unwrap(), status(true));
}

#[test]
fn connect_needs_a_stream() {
    let mut kit = kit();
    let outcome = kit.command(proto::presence::connect(user())).unwrap();
    assert_eq!(
        outcome.failure().and_then(cloudstate::Failure::code),
        Some(Code::FailedPrecondition)
    );
    assert_eq!(outcome.state_action(), None);
    assert_eq!(kit.value::<cloudstate::crdt::Vote>().unwrap(), None);
}

#[test]
fn a_restarted_entity_withdraws_the_vote_no_connection_backs() {
    let mut kit = kit();
    kit.streamed_command(proto::presence::connect(user()))
        .unwrap();
    // The proxy restarts the entity: its streams (and so the connection) are gone, but the
    // replicated vote is still yes.
    let mut restarted = kit.restarted().unwrap();
    let monitor = restarted
        .streamed_command(proto::presence::monitor(user()))
        .unwrap();
    assert_eq!(monitor.delta(), Some(&deltas::vote(false, 0, 0)));
    assert_eq!(monitor.reply::<OnlineStatus>().unwrap(), status(false));
}
