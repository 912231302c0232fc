//! The generation transitions as pure functions: given rows, when a transition is planned,
//! then the rows after it keep one active generation and at most one previous.

use super::*;
use GenerationState::{Active, Building, Previous, Retired};

fn row(generation: i64, state: GenerationState) -> Generation {
    Generation {
        generation,
        group_id: group_of("eventline-projector", generation),
        table_prefix: table_prefix("projector", generation),
        state,
        created_at_ms: 1_000,
        activated_at_ms: None,
        heartbeat_at_ms: (state == Building).then_some(10_000),
    }
}

fn states(generations: &[Generation]) -> Vec<(i64, GenerationState)> {
    generations.iter().map(|g| (g.generation, g.state)).collect()
}

fn count(generations: &[Generation], state: GenerationState) -> usize {
    generations.iter().filter(|g| g.state == state).count()
}

const STALE_MS: i64 = 30_000;

#[test]
fn names_of_the_first_generation_are_the_original_ones() {
    assert_eq!(table_prefix("projector", 1), "projector_");
    assert_eq!(group_of("eventline-projector", 1), "eventline-projector");
    assert_eq!(table_prefix("projector", 12), "projector_g12_");
    assert_eq!(group_of("eventline-projector", 12), "eventline-projector.g12");
}

#[test]
fn states_round_trip_and_only_building_and_active_are_written() {
    for state in [Building, Active, Previous, Retired] {
        assert_eq!(GenerationState::parse(state.as_str()), Some(state));
    }
    assert_eq!(GenerationState::parse("ACTIVE"), None);
    assert!(Building.is_writable() && Active.is_writable());
    assert!(!Previous.is_writable() && !Retired.is_writable());
}

#[test]
fn a_first_build_gets_the_next_number_and_keeps_the_active_one_serving() {
    let plan = plan_build(&[row(1, Active)], 20_000, STALE_MS).unwrap();
    assert_eq!((plan.generation, plan.serving), (2, 1));
    assert_eq!(plan.stale, Transition::default());
}

#[test]
fn numbers_are_never_reused_even_after_retirement() {
    let rows = [row(1, Retired), row(2, Retired), row(3, Previous), row(4, Active)];
    assert_eq!(plan_build(&rows, 20_000, STALE_MS).unwrap().generation, 5);
}

#[test]
fn a_live_build_refuses_a_second_one() {
    let rows = [row(1, Active), row(2, Building)];
    let refused = plan_build(&rows, 10_000 + STALE_MS - 1, STALE_MS).unwrap_err();
    assert_eq!(
        refused,
        TransitionError::AlreadyBuilding { generation: 2, heartbeat_age_ms: STALE_MS - 1, stale_after_ms: STALE_MS }
    );
    assert!(refused.to_string().contains("generation 2 is being built"));
}

#[test]
fn a_dead_build_is_retired_with_its_tables_before_the_next_one() {
    let rows = [row(1, Active), row(2, Building)];
    let plan = plan_build(&rows, 10_000 + STALE_MS, STALE_MS).unwrap();
    assert_eq!(plan.generation, 3);
    assert_eq!(plan.stale.drop_tables_of, [2]);
    let after = plan.stale.apply_to(&rows);
    assert_eq!(states(&after), [(1, Active), (2, Retired)]);
}

#[test]
fn a_swap_activates_the_build_and_keeps_the_old_one_as_previous() {
    let rows = [row(1, Active), row(2, Building)];
    let swap = plan_swap(&rows, 2).unwrap();
    assert_eq!(swap.activates(), Some(2));
    assert!(swap.drop_tables_of.is_empty(), "generation 1 is kept for a rollback");
    assert_eq!(states(&swap.apply_to(&rows)), [(1, Previous), (2, Active)]);
}

#[test]
fn a_second_swap_retires_the_previous_one_and_drops_its_tables() {
    let rows = [row(1, Previous), row(2, Active), row(3, Building)];
    let swap = plan_swap(&rows, 3).unwrap();
    assert_eq!(swap.drop_tables_of, [1]);
    let after = swap.apply_to(&rows);
    assert_eq!(states(&after), [(1, Retired), (2, Previous), (3, Active)]);
}

#[test]
fn every_step_of_a_swap_keeps_at_most_one_active_generation() {
    let rows = vec![row(1, Previous), row(2, Active), row(3, Building)];
    let swap = plan_swap(&rows, 3).unwrap();
    let mut now = rows;
    for change in &swap.changes {
        let step = Transition { changes: vec![*change], drop_tables_of: Vec::new() };
        now = step.apply_to(&now);
        assert!(count(&now, Active) <= 1, "{:?}", states(&now));
    }
    assert_eq!(count(&now, Active), 1);
    assert_eq!(count(&now, Previous), 1);
}

#[test]
fn only_a_building_generation_can_be_swapped_in() {
    let rows = [row(1, Active), row(2, Retired)];
    assert_eq!(
        plan_swap(&rows, 2).unwrap_err(),
        TransitionError::NotBuilding { generation: 2, state: "retired".into() }
    );
    assert!(matches!(plan_swap(&rows, 9), Err(TransitionError::NotBuilding { generation: 9, .. })));
}

#[test]
fn a_rollback_swaps_active_and_previous_and_a_second_one_undoes_it() {
    let rows = vec![row(1, Previous), row(2, Active)];
    let rollback = plan_rollback(&rows).unwrap();
    assert_eq!(rollback.activates(), Some(1));
    assert!(rollback.drop_tables_of.is_empty());
    let after = rollback.apply_to(&rows);
    assert_eq!(states(&after), [(1, Active), (2, Previous)]);
    let again = plan_rollback(&after).unwrap().apply_to(&after);
    assert_eq!(states(&again), states(&rows));
}

#[test]
fn a_rollback_needs_a_previous_generation() {
    assert_eq!(plan_rollback(&[row(1, Active)]).unwrap_err(), TransitionError::NoPrevious);
    assert_eq!(
        plan_rollback(&[row(1, Retired), row(2, Active), row(3, Building)]).unwrap_err(),
        TransitionError::NoPrevious,
        "a build in progress is not a rollback target"
    );
    assert_eq!(plan_rollback(&[]).unwrap_err(), TransitionError::NoActive);
}

#[test]
fn abandoning_a_build_retires_only_it() {
    let rows = [row(1, Previous), row(2, Active), row(3, Building)];
    let abandon = plan_abandon(&rows, 3).unwrap();
    assert_eq!(abandon.drop_tables_of, [3]);
    assert_eq!(states(&abandon.apply_to(&rows)), [(1, Previous), (2, Active), (3, Retired)]);
    assert!(plan_abandon(&rows, 2).is_err(), "the active one is never abandoned");
}

fn offsets(entries: &[(&str, i32, i64)]) -> Vec<(TopicPartition, i64)> {
    entries.iter().map(|(t, p, o)| (((*t).to_owned(), *p), *o)).collect()
}

#[test]
fn a_build_is_behind_until_it_reaches_the_active_group_on_every_partition() {
    let topics = vec!["orders".to_owned(), "payments".to_owned()];
    let active = offsets(&[("orders", 0, 10), ("orders", 1, 4), ("payments", 0, 7), ("orders.retry", 0, 3)]);
    let build = offsets(&[("orders", 0, 12), ("orders", 1, 3)]);
    let lagging = behind(&topics, &active, &build);
    assert_eq!(
        lagging,
        [
            Behind { topic: "orders".into(), partition: 1, next_offset: Some(3), reference: 4 },
            Behind { topic: "payments".into(), partition: 0, next_offset: None, reference: 7 },
        ],
        "topics outside the projector's (a group's retry topic) do not count"
    );
    let caught_up = offsets(&[("orders", 0, 10), ("orders", 1, 4), ("payments", 0, 9)]);
    assert!(behind(&topics, &active, &caught_up).is_empty());
    assert!(behind(&topics, &[], &[]).is_empty(), "nothing applied anywhere yet");
}
