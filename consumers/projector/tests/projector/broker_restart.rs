//! The broker killed and started again under a running projector: the projector keeps going by
//! itself, and the read model ends equal to the fold of every event published (none lost, none
//! applied twice).

use eventline_projector::domain::ReadModel;
use proptest::strategy::{Strategy as _, ValueTree as _};
use proptest::test_runner::{Config, TestRunner};

use crate::events;
use crate::support::{Backend, Env, Running};

async fn the_projector_keeps_going_across_a_broker_restart(backend: Backend) {
    let mut env = Env::start().await;
    let projector = Running::start(&env, backend).await;
    let mut runner = TestRunner::new(Config::default());
    let mut stream = |name: &str| events::stream(name.to_owned(), 60).new_tree(&mut runner).unwrap().current();
    let (before, after) = (stream("before"), stream("after"));

    let positions = env.send_all(&before).await;
    projector.caught_up(&positions).await;
    env.stack.broker.stop().await;
    // Down long enough for the projector's fetches and commits to fail.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    env.stack.broker.resume().await;

    let positions = env.send_all(&after).await;
    projector.caught_up(&positions).await;
    let all: Vec<_> = before.into_iter().chain(after).collect();
    assert_eq!(projector.store.snapshot().await.unwrap(), ReadModel::fold(&all));
    projector.stop().await;
}

#[tokio::test]
async fn the_projector_keeps_going_across_a_broker_restart_on_sqlite() {
    the_projector_keeps_going_across_a_broker_restart(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_projector_keeps_going_across_a_broker_restart_on_postgres() {
    the_projector_keeps_going_across_a_broker_restart(Backend::Postgres).await;
}
