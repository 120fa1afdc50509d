//! `stoker alerts`: alert rules (issue 13, item 8), on a database or through a server. Both
//! paths answer with the API's views, so the output (and `--json`) is the same either way.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::backend::Backend;
use super::output::{self, Table};
use super::{parse, CliError, Target};
use crate::api::alerts::{
    rule_from, AlertBaselineName, AlertCreateRequest, AlertEventView, AlertFormatName,
    AlertHistory, AlertList, AlertMetricName, AlertScopeBody, AlertView,
};

/// The commands of `stoker alerts`.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start: boxing `create`'s flags buys nothing
pub enum AlertsCommand {
    /// List alert rules with their state.
    List(Target),
    /// Create an alert rule, e.g. `stoker alerts create mail-backlog queue_depth
    /// https://hooks.example.com/x --queue mail --threshold 1000 --for 2m`.
    Create(AlertCreateArgs),
    /// Show a rule, its state and its recent firing and resolved events.
    Show(AlertNameArgs),
    /// Delete a rule and its events.
    Delete(AlertNameArgs),
}

/// `stoker alerts create`.
#[derive(Debug, Clone, Args)]
pub struct AlertCreateArgs {
    /// The rule's name: letters, digits, '_', '-', '.'.
    pub name: String,
    /// What it watches: failure_rate, failure_count, queue_depth, oldest_age, no_worker,
    /// throughput or discarded.
    #[arg(value_parser = metric)]
    pub metric: AlertMetricName,
    /// Where messages are posted: an http(s) URL.
    pub url: String,
    /// The value past which it fires (above; below for no_worker and throughput).
    /// [default: 1 for no_worker, 0 for discarded; required otherwise]
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// Where it counts as clear again. [default: the threshold]
    #[arg(long, allow_negative_numbers = true)]
    pub resolve_threshold: Option<f64>,
    /// Only this queue (required for no_worker).
    #[arg(long)]
    pub queue: Option<String>,
    /// Only this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The window of windowed metrics, e.g. 5m (1m to 7d). [default: 5m]
    #[arg(long, value_parser = parse::duration)]
    pub window: Option<Duration>,
    /// How long the condition must hold before it fires, e.g. 2m. [default: 0s]
    #[arg(long = "for", value_parser = parse::duration)]
    pub for_: Option<Duration>,
    /// How long it must be clear before it resolves, e.g. 5m. [default: 0s]
    #[arg(long, value_parser = parse::duration)]
    pub resolve_after: Option<Duration>,
    /// Throughput only: compare with the same window a `day` or a `week` earlier (the
    /// threshold is then a fraction).
    #[arg(long, value_parser = baseline)]
    pub baseline: Option<AlertBaselineName>,
    /// Post Slack's `{"text"}` body instead of Stoker's JSON.
    #[arg(long)]
    pub slack: bool,
    /// A header sent with each message, as NAME:VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE", value_parser = header)]
    pub headers: Vec<(String, String)>,
    /// Create it disabled (stored, not evaluated).
    #[arg(long)]
    pub disabled: bool,
    /// Where to create it, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// A command on one rule.
#[derive(Debug, Clone, Args)]
pub struct AlertNameArgs {
    /// The rule's name.
    pub name: String,
    /// Where the rule is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

fn metric(raw: &str) -> Result<AlertMetricName, String> {
    let metric = stoker::alerts::AlertMetric::parse(raw).map_err(|err| err.reason)?;
    Ok(metric.into())
}

fn baseline(raw: &str) -> Result<AlertBaselineName, String> {
    match raw {
        "day" => Ok(AlertBaselineName::Day),
        "week" => Ok(AlertBaselineName::Week),
        other => Err(format!("{other:?} is not day or week")),
    }
}

fn header(raw: &str) -> Result<(String, String), String> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| format!("{raw:?} is not NAME:VALUE"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

fn check_name(name: &str) -> Result<(), CliError> {
    stoker::alerts::validate_alert_name(name).map_err(|err| CliError::Invalid(err.to_string()))
}

fn seconds(duration: Option<Duration>) -> Option<u64> {
    duration.map(|d| d.as_secs())
}

fn to_json(value: &impl serde::Serialize) -> Result<Value, CliError> {
    serde_json::to_value(value).map_err(|err| CliError::Invalid(err.to_string()))
}

/// The request the flags of `stoker alerts create` describe.
fn create_request(args: &AlertCreateArgs) -> AlertCreateRequest {
    let scope = AlertScopeBody {
        queue: args.queue.clone(),
        kind: args.kind.clone(),
        tenant: args.tenant.clone(),
    };
    AlertCreateRequest {
        name: args.name.clone(),
        metric: args.metric,
        scope: (scope != AlertScopeBody::default()).then_some(scope),
        threshold: args.threshold,
        resolve_threshold: args.resolve_threshold,
        window_seconds: seconds(args.window),
        for_seconds: seconds(args.for_),
        resolve_seconds: seconds(args.resolve_after),
        baseline: args.baseline,
        url: args.url.clone(),
        headers: (!args.headers.is_empty())
            .then(|| args.headers.iter().cloned().collect::<BTreeMap<_, _>>()),
        format: args.slack.then_some(AlertFormatName::Slack),
        enabled: args.disabled.then_some(false),
    }
}

/// Runs a `stoker alerts` command.
pub(crate) async fn run(command: AlertsCommand) -> Result<(), CliError> {
    match command {
        AlertsCommand::List(target) => {
            let backend = target.connect().await?;
            let alerts: Vec<AlertView> = match &backend {
                Backend::Direct(direct) => direct
                    .client()
                    .alert_list()
                    .await?
                    .into_iter()
                    .map(AlertView::from)
                    .collect(),
                Backend::Remote(remote) => {
                    remote
                        .call::<AlertList>(Method::GET, "v1/alerts", None)
                        .await?
                        .alerts
                }
            };
            print_list(&alerts, target.json);
            Ok(())
        }
        AlertsCommand::Create(args) => {
            check_name(&args.name)?;
            let request = create_request(&args);
            let backend = args.target.connect().await?;
            let view: AlertView = match &backend {
                Backend::Direct(direct) => {
                    let rule = rule_from(request).map_err(stoker::Error::from)?;
                    direct.client().alert_create(rule).await?.into()
                }
                Backend::Remote(remote) => {
                    remote
                        .call(Method::POST, "v1/alerts", Some(&to_json(&request)?))
                        .await?
                }
            };
            if args.target.json {
                output::json(&view);
            } else {
                println!("created alert rule {}", view.name);
                print_detail(&view);
            }
            Ok(())
        }
        AlertsCommand::Show(args) => {
            check_name(&args.name)?;
            let backend = args.target.connect().await?;
            let history: AlertHistory = match &backend {
                Backend::Direct(direct) => {
                    let client = direct.client();
                    let alert = client.alert_get(&args.name).await?;
                    let events = client.alert_events(&args.name, 20).await?;
                    AlertHistory {
                        alert: alert.into(),
                        events: events.into_iter().map(AlertEventView::from).collect(),
                    }
                }
                Backend::Remote(remote) => {
                    let path = format!("v1/alerts/{}/events?limit=20", args.name);
                    remote.call(Method::GET, &path, None).await?
                }
            };
            if args.target.json {
                output::json(&history);
            } else {
                print_detail(&history.alert);
                print_events(&history.events);
            }
            Ok(())
        }
        AlertsCommand::Delete(args) => {
            check_name(&args.name)?;
            let backend = args.target.connect().await?;
            let view: AlertView = match &backend {
                Backend::Direct(direct) => direct.client().alert_delete(&args.name).await?.into(),
                Backend::Remote(remote) => {
                    let path = format!("v1/alerts/{}", args.name);
                    remote.call(Method::DELETE, &path, None).await?
                }
            };
            if args.target.json {
                output::json(&view);
            } else {
                println!("deleted alert rule {}", view.name);
            }
            Ok(())
        }
    }
}

fn metric_name(metric: AlertMetricName) -> String {
    serde_json::to_value(metric)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn state_name(view: &AlertView) -> String {
    serde_json::to_value(view.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn scope_text(scope: &AlertScopeBody) -> String {
    let mut parts = Vec::new();
    for (label, value) in [
        ("queue", &scope.queue),
        ("kind", &scope.kind),
        ("tenant", &scope.tenant),
    ] {
        if let Some(value) = value {
            parts.push(format!("{label}={value}"));
        }
    }
    if parts.is_empty() {
        "all".to_owned()
    } else {
        parts.join(",")
    }
}

fn print_list(alerts: &[AlertView], json: bool) {
    if json {
        output::json(&json!({ "alerts": alerts }));
        return;
    }
    if alerts.is_empty() {
        println!("no alert rules");
        return;
    }
    let mut table = Table::new(&["NAME", "METRIC", "SCOPE", "THRESHOLD", "STATE", "SINCE"]);
    for a in alerts {
        table.row(vec![
            a.name.clone(),
            metric_name(a.metric),
            scope_text(&a.scope),
            a.threshold.to_string(),
            if a.enabled {
                state_name(a)
            } else {
                "disabled".to_owned()
            },
            a.since
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    print!("{}", table.render());
}

fn print_detail(a: &AlertView) {
    println!("name:       {}", a.name);
    println!("metric:     {}", metric_name(a.metric));
    println!("scope:      {}", scope_text(&a.scope));
    println!(
        "threshold:  {} (clear at {})",
        a.threshold, a.resolve_threshold
    );
    println!(
        "window:     {}s, for {}s, resolve after {}s",
        a.window_seconds, a.for_seconds, a.resolve_seconds
    );
    println!("url:        {}", a.url);
    println!(
        "state:      {}{}",
        state_name(a),
        if a.enabled { "" } else { " (disabled)" }
    );
    if let Some(value) = a.value {
        println!("value:      {value}");
    }
}

fn print_events(events: &[AlertEventView]) {
    if events.is_empty() {
        println!("no events yet");
        return;
    }
    let mut table = Table::new(&["AT", "EVENT", "VALUE", "THRESHOLD", "JOB"]);
    for e in events {
        table.row(vec![
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.kind.clone(),
            e.value.to_string(),
            e.threshold.to_string(),
            e.job_id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    print!("{}", table.render());
}
