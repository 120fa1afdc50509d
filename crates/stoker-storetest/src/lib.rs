//! The store conformance suite: every [`Store`](stoker_core::Store) implementation runs these
//! behaviours, so the worker, the client and the server can rely on one contract whatever the
//! database.
//!
//! The suite is one `pub async fn` per behaviour, generic over the store and grouped in
//! modules by area. Each takes a fresh, migrated, isolated store and asserts the exact states
//! and fields the [`Store`](stoker_core::Store) docs promise. All time comes from the `now` in
//! each call's params, as offsets from a fixed instant in 2030: nothing sleeps, and a store
//! that reads the database's clock instead fails. Concurrent behaviours (racing inserts of one
//! idempotency key, 8 claimers over 10,000 jobs, 8 leader candidates) line their tasks up on a
//! barrier; event behaviours wait on the receiver with a timeout.
//!
//! # Running the suite against a store
//!
//! A store crate adds `stoker-storetest` and `tokio` (with the `macros` and
//! `rt-multi-thread` features) as dev-dependencies, and writes one `tests/conformance.rs`
//! that calls [`conformance_tests!`] with an async factory returning a fresh store:
//!
//! ```ignore
//! use std::sync::Arc;
//!
//! use stoker_sqlite::SqliteStore;
//!
//! /// A new, migrated store in its own temporary file.
//! async fn store() -> Arc<SqliteStore> {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = SqliteStore::open(dir.path().join("stoker.db")).await.unwrap();
//!     store.migrate().await.unwrap();
//!     std::mem::forget(dir); // keep the file for the test's duration
//!     Arc::new(store)
//! }
//!
//! stoker_storetest::conformance_tests!(store);
//! ```
//!
//! This expands into one `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` per
//! behaviour, named `<module>_<behaviour>` (e.g. `claim_concurrent_claimers_10000`), so
//! `cargo test -p stoker-sqlite claim_` runs one area. Every test calls the factory once, so
//! the factory must isolate tests from each other: a temporary file per test on SQLite, a
//! schema per test on PostgreSQL.
//!
//! Attributes after the factory are put on every test, e.g. to skip the suite when its
//! database is not configured:
//!
//! ```ignore
//! stoker_storetest::conformance_tests!(
//!     store,
//!     #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
//! );
//! ```
//!
//! The behaviours of [`shared`] take two handles on one database, as two processes sharing
//! it would (claims, leadership and idempotency keys stay exclusive across them): a store's
//! tests call them directly, opening the second handle the way another process would.
//!
//! A behaviour that needs a capability the store lacks (events, when
//! [`Store::subscribe`](stoker_core::Store::subscribe) returns `None`) passes after printing
//! why it was skipped. Behaviours that depend on the driver's connection type, such as
//! inserting inside the caller's transaction
//! ([`StoreTx`](stoker_core::StoreTx)), live in each store's own tests.
//!
//! # Adding a behaviour
//!
//! Write a `pub async fn name<S: Store>(store: Arc<S>)` with a doc comment saying what it
//! checks, in the module of its area, and add `module_name => module::name` to the list in
//! [`conformance_tests!`]; a unit test fails if the list and the modules disagree. (The
//! two-handle behaviours in [`shared`] are called by each store's tests instead.) Any change
//! to the `Store` trait extends the suite in the same commit.

#![warn(missing_docs)]

mod fixture;

pub mod cancel;
pub mod claim;
// Recurring schedules (issue 15).
pub mod cron;
pub mod events;
// Failure groups, bulk operations and job logs (issue 13).
pub mod failures;
pub mod fence;
pub mod finish;
// History (issue 13).
pub mod counts;
pub mod history;
pub mod input;
pub mod insert;
pub mod leader;
pub mod manage;
pub mod migrate;
pub mod prune;
pub mod queue;
pub mod rescue;
// --- stream search ---
pub mod search;
pub mod shared;
pub mod stage;
pub mod stats;
// --- stream alerts ---
pub mod alerts;
// --- stream tokens ---
pub mod token;
// --- stream flow ---
pub mod flow;
// --- stream wf ---
pub mod workflow;
// --- stream tenancy ---
pub mod audit;
pub mod audited;
pub mod tenancy;
// --- stream crypt ---
pub mod sealed;
// --- stream wake ---
pub mod wake;
// --- stream workflows ---
pub mod batch;
// Parents that wait for their children (issue 18).
pub mod children;
// --- stream history ---
// Job-completion callbacks (issue 13, item 8).
pub mod changes;
pub mod on_finish;

/// Expands into one `#[tokio::test]` per conformance behaviour, each run on a fresh store from
/// `$factory`.
///
/// `$factory` is a path to an `async fn() -> Arc<S>` (with `S: Store`) that returns a fresh,
/// isolated, migrated store. Any attributes after it are added to every test. See the
/// [crate docs](crate) for an example.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path $(, #[$($attr:tt)*])* $(,)?) => {
        $crate::__conformance_tests! {
            factory: $factory;
            attrs: [$(#[$($attr)*])*];
            cron_slots_cross_boundaries => cron::slots_cross_boundaries,
            cron_dst_transitions_2026 => cron::dst_transitions_2026,
            cron_catch_up_skip_after_outage => cron::catch_up_skip_after_outage,
            cron_catch_up_latest_after_outage => cron::catch_up_latest_after_outage,
            cron_catch_up_all_after_outage => cron::catch_up_all_after_outage,
            cron_changed_expr_no_backfill => cron::changed_expr_no_backfill,
            cron_overlap_skip => cron::overlap_skip,
            cron_run_now_never_collides => cron::run_now_never_collides,
            cron_concurrent_firers_exactly_once => cron::concurrent_firers_exactly_once,
            cron_write_modes => cron::write_modes,
            cron_many_due_schedules_fire_in_batches => cron::many_due_schedules_fire_in_batches,
            insert_returns_ids_in_order => insert::returns_ids_in_order,
            insert_empty_batch_is_noop => insert::empty_batch_is_noop,
            insert_defaults_applied => insert::defaults_applied,
            insert_options_round_trip => insert::options_round_trip,
            insert_backoff_round_trip => insert::backoff_round_trip,
            insert_unique_key_returns_existing => insert::unique_key_returns_existing,
            insert_unique_key_scoped_by_tenant => insert::unique_key_scoped_by_tenant,
            insert_unique_key_twice_in_one_batch => insert::unique_key_twice_in_one_batch,
            insert_bulk_10000_in_one_call => insert::bulk_10000_in_one_call,
            insert_bulk_concurrent => insert::bulk_concurrent,
            insert_bulk_with_unique_keys => insert::bulk_with_unique_keys,
            insert_bulk_of_taken_keys_only => insert::bulk_of_taken_keys_only,
            insert_unique_key_concurrent => insert::unique_key_concurrent,
            claim_orders_by_priority_run_at_id => claim::orders_by_priority_run_at_id,
            claim_future_run_at_waits => claim::future_run_at_waits,
            claim_limit_respected => claim::limit_respected,
            claim_sets_running_fields => claim::sets_running_fields,
            claim_lease_sets_expiry => claim::lease_sets_expiry,
            claim_kinds_filter => claim::kinds_filter,
            claim_other_queues_untouched => claim::other_queues_untouched,
            claim_retryable_due_claimed => claim::retryable_due_claimed,
            claim_concurrent_claimers_10000 => claim::concurrent_claimers_10000,
            stage_retry_and_snooze_wait_for_their_run_at => stage::retry_and_snooze_wait_for_their_run_at,
            stage_limit_and_order => stage::limit_and_order,
            stage_cancel_and_retry_leave_the_schedule => stage::cancel_and_retry_leave_the_schedule,
            finish_completed => finish::completed,
            finish_retry => finish::retry,
            finish_discard => finish::discard,
            finish_snooze => finish::snooze,
            finish_cancel => finish::cancel,
            finish_hand_back => finish::hand_back,
            finish_error_history_accumulates => finish::error_history_accumulates,
            finish_stale_attempt_fenced => finish::stale_attempt_fenced,
            finish_non_running_ignored => finish::non_running_ignored,
            finish_mixed_batch => finish::mixed_batch,
            finish_cancel_requested_rule => finish::cancel_requested_rule,
            finish_clears_lease => finish::clears_lease,
            finish_returns_what_it_applied => finish::returns_what_it_applied,
            fence_grows_with_every_claim_only => fence::grows_with_every_claim_only,
            fence_snooze_then_reclaim => fence::snooze_then_reclaim,
            fence_hand_back_then_reclaim => fence::hand_back_then_reclaim,
            fence_duplicated_snooze_and_heartbeat => fence::duplicated_snooze_and_heartbeat,
            fence_rescue_then_reclaim => fence::rescue_then_reclaim,
            fence_operator_retry_then_reclaim => fence::operator_retry_then_reclaim,
            fence_lapsed_lease_refuses_reports => fence::lapsed_lease_refuses_reports,
            fence_lease_rule_spares_live_and_unleased_jobs => fence::lease_rule_spares_live_and_unleased_jobs,
            cancel_waiting_becomes_cancelled => cancel::waiting_becomes_cancelled,
            cancel_running_gets_cancel_requested => cancel::running_gets_cancel_requested,
            cancel_running_then_failure_ends_cancelled => cancel::running_then_failure_ends_cancelled,
            cancel_running_then_completed_ends_completed => cancel::running_then_completed_ends_completed,
            cancel_finished_unchanged => cancel::finished_unchanged,
            cancel_unknown_is_not_found => cancel::unknown_is_not_found,
            manage_get_unknown_is_none => manage::get_unknown_is_none,
            manage_list_filters => manage::list_filters,
            manage_list_keyset_pagination => manage::list_keyset_pagination,
            manage_retry_finished_jobs => manage::retry_finished_jobs,
            manage_retry_running_unchanged => manage::retry_running_unchanged,
            manage_retry_unknown_is_not_found => manage::retry_unknown_is_not_found,
            manage_retry_many_filters => manage::retry_many_filters,
            manage_retry_many_limit_oldest_first => manage::retry_many_limit_oldest_first,
            manage_retry_many_leaves_unfinished_alone => manage::retry_many_leaves_unfinished_alone,
            manage_retry_many_invalid_states => manage::retry_many_invalid_states,
            manage_delete_returns_row => manage::delete_returns_row,
            manage_delete_running_is_conflict => manage::delete_running_is_conflict,
            manage_delete_unknown_is_not_found => manage::delete_unknown_is_not_found,
            manage_progress_fenced => manage::progress_fenced,
            manage_progress_details => manage::progress_details,
            queue_pause_stops_claims => queue::pause_stops_claims,
            queue_pause_is_idempotent => queue::pause_is_idempotent,
            queue_list_shows_paused_flags => queue::list_shows_paused_flags,
            queue_invalid_name_rejected => queue::invalid_name_rejected,
            stats_after_insert => stats::after_insert,
            stats_after_claim => stats::after_claim,
            stats_after_finish => stats::after_finish,
            stats_after_cancel => stats::after_cancel,
            stats_after_retry => stats::after_retry,
            stats_after_retry_many => stats::after_retry_many,
            stats_after_delete => stats::after_delete,
            stats_after_prune => stats::after_prune,
            rescue_heartbeat_creates_and_updates => rescue::heartbeat_creates_and_updates,
            rescue_stuck_jobs_of_silent_and_missing_workers => rescue::stuck_jobs_of_silent_and_missing_workers,
            rescue_stuck_leased_jobs_when_lease_ends => rescue::stuck_leased_jobs_when_lease_ends,
            rescue_extend_lease_moves_expiry => rescue::extend_lease_moves_expiry,
            rescue_extend_lease_fenced => rescue::extend_lease_fenced,
            rescue_extend_lease_reports_cancel_requested => rescue::extend_lease_reports_cancel_requested,
            rescue_late_finish_after_rescue_rejected => rescue::late_finish_after_rescue_rejected,
            rescue_heartbeat_returns_cancel_requested => rescue::heartbeat_returns_cancel_requested,
            rescue_heartbeat_reports_due_queues => rescue::heartbeat_reports_due_queues,
            rescue_heartbeat_reports_leader_vacancy => rescue::heartbeat_reports_leader_vacancy,
            rescue_worker_prune_remove_list => rescue::worker_prune_remove_list,
            prune_by_age_per_state => prune::by_age_per_state,
            prune_keep_last_per_queue => prune::keep_last_per_queue,
            prune_limit_respected => prune::limit_respected,
            leader_elect_when_empty => leader::elect_when_empty,
            leader_second_fails_while_live => leader::second_fails_while_live,
            leader_holder_renews => leader::holder_renews,
            leader_takeover_after_expiry => leader::takeover_after_expiry,
            leader_resign_hands_over => leader::resign_hands_over,
            leader_get_none_after_expiry => leader::get_none_after_expiry,
            leader_exclusive_under_race => leader::exclusive_under_race,
            events_insert_sends_jobs_available => events::insert_sends_jobs_available,
            events_stage_sends_jobs_available => events::stage_sends_jobs_available,
            events_retry_sends_jobs_available => events::retry_sends_jobs_available,
            events_retry_many_sends_jobs_available => events::retry_many_sends_jobs_available,
            events_resume_sends_jobs_available => events::resume_sends_jobs_available,
            events_cancel_running_sends_cancel_requested => events::cancel_running_sends_cancel_requested,
            input_empty_kind => input::empty_kind,
            input_kind_too_long => input::kind_too_long,
            input_kind_with_whitespace => input::kind_with_whitespace,
            input_queue_with_spaces => input::queue_with_spaces,
            input_max_attempts_zero => input::max_attempts_zero,
            input_args_over_limit => input::args_over_limit,
            input_empty_tenant => input::empty_tenant,
            input_timeout_zero => input::timeout_zero,
            input_backoff_fields => input::backoff_fields,
            migrate_twice_is_noop => migrate::twice_is_noop,
            // Failure groups, bulk operations and job logs (issue 13).
            failures_failures_are_grouped_by_fingerprint => failures::failures_are_grouped_by_fingerprint,
            failures_stale_failure_is_not_grouped => failures::stale_failure_is_not_grouped,
            failures_failure_list_rejects_bad_input => failures::failure_list_rejects_bad_input,
            failures_bulk_retry_in_batches_with_progress => failures::bulk_retry_in_batches_with_progress,
            failures_bulk_actions_apply_and_skip => failures::bulk_actions_apply_and_skip,
            failures_bulk_sparse_filter_and_time_range => failures::bulk_sparse_filter_and_time_range,
            failures_bulk_abort_and_list => failures::bulk_abort_and_list,
            failures_bulk_rejects_bad_input => failures::bulk_rejects_bad_input,
            failures_bulk_resumes_from_cursor => failures::bulk_resumes_from_cursor,
            failures_logs_fenced_and_bounded => failures::logs_fenced_and_bounded,
            failures_logs_pruned_with_job => failures::logs_pruned_with_job,
            // History (issue 13).
            counts_counters_equal_real_count_after_random_transitions => counts::counters_equal_real_count_after_random_transitions,
            history_record_adds_and_scopes => history::record_adds_and_scopes,
            history_rollup_across_boundaries_and_retention => history::rollup_across_boundaries_and_retention,
            history_queue_depths_due_and_scheduled => history::queue_depths_due_and_scheduled,
            // --- stream alerts ---
            alerts_rule_crud => alerts::rule_crud,
            alerts_rule_rejects_bad_input => alerts::rule_rejects_bad_input,
            alerts_transition_compare_and_set => alerts::transition_compare_and_set,
            alerts_transition_with_bad_job_writes_nothing => alerts::transition_with_bad_job_writes_nothing,
            alerts_events_keep_the_newest => alerts::events_keep_the_newest,
            // --- stream search ---
            search_every_criterion_matches => search::every_criterion_matches,
            search_failure_group_criterion => search::failure_group_criterion,
            search_keyset_pages_both_directions => search::keyset_pages_both_directions,
            search_scan_budget_bounds_each_page => search::scan_budget_bounds_each_page,
            search_count_is_capped => search::count_is_capped,
            search_invalid_params_refused => search::invalid_params_refused,
            search_bulk_operation_uses_search_criteria => search::bulk_operation_uses_search_criteria,
            // --- stream counts ---
            prune_queue_rules_per_state => prune::queue_rules_per_state,
            // --- stream tokens ---
            token_create_get_list => token::create_get_list,
            token_revoke_and_expire => token::revoke_and_expire,
            token_touch_once_a_minute => token::touch_once_a_minute,
            // --- stream flow ---
            flow_rate_limit_gcra => flow::rate_limit_gcra,
            flow_rate_limit_window_bound => flow::rate_limit_window_bound,
            flow_concurrency_released_on_every_exit => flow::concurrency_released_on_every_exit,
            flow_throttled_key_never_blocks_others => flow::throttled_key_never_blocks_others,
            flow_args_key_concurrency => flow::args_key_concurrency,
            flow_push_back_holds_the_key => flow::push_back_holds_the_key,
            flow_manage_and_validate => flow::manage_and_validate,
            flow_concurrent_claimers_respect_the_limit => flow::concurrent_claimers_respect_the_limit,
            flow_fair_small_tenant_is_not_starved => flow::fair_small_tenant_is_not_starved,
            flow_fair_weights_share_the_starts => flow::fair_weights_share_the_starts,
            flow_fair_keeps_priorities_within_a_tenant => flow::fair_keeps_priorities_within_a_tenant,
            flow_quota_refuses_whole_inserts => flow::quota_refuses_whole_inserts,
            flow_quota_covers_workflows_and_batches => flow::quota_covers_workflows_and_batches,
            flow_usage_shows_what_waits => flow::usage_shows_what_waits,
            flow_fair_many_tenants_take_turns => flow::fair_many_tenants_take_turns,
            // --- stream wf ---
            workflow_diamond_runs_in_dependency_order => workflow::diamond_runs_in_dependency_order,
            workflow_matrix_outcome_by_policy => workflow::matrix_outcome_by_policy,
            workflow_hold_resumes_after_retry => workflow::hold_resumes_after_retry,
            workflow_cancel_cascade_is_counted => workflow::cancel_cascade_is_counted,
            workflow_fan_in_released_by_one_batch => workflow::fan_in_released_by_one_batch,
            workflow_bad_input_writes_nothing => workflow::bad_input_writes_nothing,
            workflow_depends_on_existing_jobs => workflow::depends_on_existing_jobs,
            workflow_dynamic_fan_out => workflow::dynamic_fan_out,
            workflow_cancel_propagates => workflow::cancel_propagates,
            workflow_prune_spares_needed_results => workflow::prune_spares_needed_results,
            // --- stream tenancy ---
            tenancy_claim_takes_only_own_jobs => tenancy::claim_takes_only_own_jobs,
            tenancy_limited_claim_takes_only_own_jobs => tenancy::limited_claim_takes_only_own_jobs,
            tenancy_claim_respects_pause_and_schedule => tenancy::claim_respects_pause_and_schedule,
            audit_append_and_list => audit::append_and_list,
            audit_prune_by_age => audit::prune_by_age,
            audit_invalid_list_refused => audit::invalid_list_refused,
            audited_job_actions_row_iff_committed => audited::job_actions_row_iff_committed,
            audited_settings_row_iff_committed => audited::settings_row_iff_committed,
            audited_many_jobs_rows_count => audited::many_jobs_rows_count,
            // --- stream ops ---
            failures_failures_counted_by_the_hour => failures::failures_counted_by_the_hour,
            // --- stream crypt ---
            sealed_list_finds_sealed_values => sealed::list_finds_sealed_values,
            sealed_rewrite_compares_the_nonce => sealed::rewrite_compares_the_nonce,
            // --- stream wake ---
            wake_completion_wakes_released_queue => wake::completion_wakes_released_queue,
            wake_cascade_wakes_released_queue => wake::cascade_wakes_released_queue,
            wake_cancel_wakes_released_queue => wake::cancel_wakes_released_queue,
            wake_bulk_cancel_wakes_released_queue => wake::bulk_cancel_wakes_released_queue,
            wake_workflow_cancel_wakes_released_queue => wake::workflow_cancel_wakes_released_queue,
            // --- stream workflows ---
            batch_counts_and_fires_once => batch::counts_and_fires_once,
            batch_closed_empty_fires_at_once => batch::closed_empty_fires_at_once,
            batch_cancel_cancels_unfinished => batch::cancel_cancels_unfinished,
            batch_bad_input_writes_nothing => batch::bad_input_writes_nothing,
            batch_list_filters => batch::list_filters,
            batch_completion_wakes_callback_queue => batch::completion_wakes_callback_queue,
            batch_delete_refuses_to_strand => batch::delete_refuses_to_strand,
            batch_bulk_ops_refuse_to_strand => batch::bulk_ops_refuse_to_strand,
            children_parent_completes_after_its_children => children::parent_completes_after_its_children,
            children_matrix_outcome_by_policy => children::matrix_outcome_by_policy,
            children_failure_while_the_parent_runs => children::failure_while_the_parent_runs,
            children_nothing_pending_completes_at_once => children::nothing_pending_completes_at_once,
            children_stale_fence_and_bad_input_write_nothing => children::stale_fence_and_bad_input_write_nothing,
            children_deleted_child_never_strands_the_parent => children::deleted_child_never_strands_the_parent,
            children_rescued_parent_still_waits => children::rescued_parent_still_waits,
            children_nested_parents_complete_together => children::nested_parents_complete_together,
            // --- stream history ---
            on_finish_each_final_state_posts_once => on_finish::each_final_state_posts_once,
            on_finish_every_path_posts => on_finish::every_path_posts,
            on_finish_sealed_job_posts_no_payload => on_finish::sealed_job_posts_no_payload,
            on_finish_invalid_callback_refused => on_finish::invalid_callback_refused,
            on_finish_callbacks_count_as_enqueued => on_finish::callbacks_count_as_enqueued,
            on_finish_callbacks_wake_their_queue => on_finish::callbacks_wake_their_queue,
            changes_bulk_step_names_changed_jobs => changes::bulk_step_names_changed_jobs,
            changes_retry_many_names_retried_jobs => changes::retry_many_names_retried_jobs,
            // --- stream tenant ---
            tenancy_depths_count_only_own_jobs => tenancy::depths_count_only_own_jobs,
            tenancy_prune_deletes_only_own_jobs => tenancy::prune_deletes_only_own_jobs,
            failures_grouped_per_tenant => failures::grouped_per_tenant,
        }
    };
}

/// Expands the behaviour list of [`conformance_tests!`]; not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    (
        factory: $factory:path;
        attrs: $attrs:tt;
        $($name:ident => $module:ident :: $behaviour:ident,)*
    ) => {
        $(
            $crate::__conformance_test! { $attrs $name $factory => $module::$behaviour }
        )*
    };
}

/// Expands one test of [`conformance_tests!`]; not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test {
    ([$(#[$($attr:tt)*])*] $name:ident $factory:path => $module:ident :: $behaviour:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $(#[$($attr)*])*
        async fn $name() {
            $crate::$module::$behaviour($factory().await).await;
        }
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    const MODULES: &[(&str, &str)] = &[
        ("cancel", include_str!("cancel.rs")),
        ("claim", include_str!("claim.rs")),
        ("cron", include_str!("cron.rs")),
        ("events", include_str!("events.rs")),
        ("failures", include_str!("failures.rs")),
        ("fence", include_str!("fence.rs")),
        ("finish", include_str!("finish.rs")),
        ("input", include_str!("input.rs")),
        ("insert", include_str!("insert.rs")),
        ("leader", include_str!("leader.rs")),
        ("manage", include_str!("manage.rs")),
        ("migrate", include_str!("migrate.rs")),
        ("prune", include_str!("prune.rs")),
        ("queue", include_str!("queue.rs")),
        ("rescue", include_str!("rescue.rs")),
        ("stage", include_str!("stage.rs")),
        ("stats", include_str!("stats.rs")),
        ("history", include_str!("history.rs")),
        ("counts", include_str!("counts.rs")),
        // --- stream alerts ---
        ("alerts", include_str!("alerts.rs")),
        // --- stream search ---
        ("search", include_str!("search.rs")),
        // --- stream tokens ---
        ("token", include_str!("token.rs")),
        // --- stream flow ---
        ("flow", include_str!("flow.rs")),
        // --- stream wf ---
        ("workflow", include_str!("workflow.rs")),
        // --- stream tenancy ---
        ("tenancy", include_str!("tenancy.rs")),
        ("audit", include_str!("audit.rs")),
        // --- stream crypt ---
        ("sealed", include_str!("sealed.rs")),
        // --- stream wake ---
        ("wake", include_str!("wake.rs")),
        // --- stream history ---
        ("on_finish", include_str!("on_finish.rs")),
        ("changes", include_str!("changes.rs")),
        // --- stream workflows ---
        ("children", include_str!("children.rs")),
    ];

    /// Every `pub async fn` in a behaviour module is in the macro's list exactly once, under
    /// the name `<module>_<fn>`, and the list names nothing else.
    #[test]
    fn macro_lists_every_behaviour() {
        let mut behaviours = BTreeSet::new();
        for (module, source) in MODULES {
            for line in source.lines() {
                if let Some(rest) = line.strip_prefix("pub async fn ") {
                    let name = rest.split('<').next().expect("a name");
                    assert!(behaviours.insert(format!("{module}::{name}")));
                }
            }
        }

        let mut listed = BTreeSet::new();
        for line in include_str!("lib.rs").lines() {
            let Some((test, path)) = line
                .trim()
                .strip_suffix(',')
                .and_then(|l| l.split_once(" => "))
            else {
                continue;
            };
            let Some((module, name)) = path.split_once("::") else {
                continue;
            };
            if !MODULES.iter().any(|(m, _)| *m == module) {
                continue;
            }
            assert_eq!(
                test,
                format!("{module}_{name}"),
                "test names are <module>_<fn>"
            );
            assert!(listed.insert(path.to_owned()), "{path} is listed twice");
        }
        assert_eq!(
            listed, behaviours,
            "the macro's list and the modules' behaviours differ"
        );
    }
}
