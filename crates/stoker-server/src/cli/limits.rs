//! `stoker limits`: the flow-control limits (issue 16), on a database or through a server.
//! Both paths answer with the API's views, so the output (and `--json`) is the same either
//! way.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::backend::Backend;
use super::output::{self, Table};
use super::{parse, CliError, Target};
use crate::api::limits::{FairBody, LimitList, LimitView, RateBody, UsageView};

/// The commands of `stoker limits`.
#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// List the limits and the limiters in use (running jobs, throttled until).
    List(Target),
    /// Create or replace a limit: a rate (`--rate 100/60s`), a concurrency, or both.
    Set(LimitsSetArgs),
    /// Delete a limit; its jobs run unlimited from then on.
    Delete(LimitsNameArgs),
}

/// `stoker limits set`.
#[derive(Debug, Clone, Args)]
pub struct LimitsSetArgs {
    /// The limit's name: 1 to 64 letters, digits, `_`, `-`, `.` or `:`.
    pub name: String,
    /// Only jobs of this queue. [default: every queue]
    #[arg(long)]
    pub queue: Option<String>,
    /// Only jobs of this kind. [default: every kind]
    #[arg(long)]
    pub kind: Option<String>,
    /// One limiter per: global, tenant, args.FIELD or metadata.FIELD.
    #[arg(long, default_value = "global")]
    pub key: String,
    /// Starts per period, as COUNT/PERIOD: 100/60s, 10/1s, 5000/1h.
    #[arg(long, value_parser = rate)]
    pub rate: Option<(u32, u64)>,
    /// How many may start at once after a quiet spell (with --rate). [default: 1]
    #[arg(long, requires = "rate")]
    pub burst: Option<u32>,
    /// At most this many running at once, across every worker.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Enqueue quota per key, as COUNT/PERIOD: accept at most this many submissions per
    /// period (with --key tenant: per tenant); beyond it enqueues are refused.
    #[arg(long, value_parser = rate)]
    pub quota: Option<(u32, u64)>,
    /// How many submissions the quota accepts at once after a quiet spell. [default: 1]
    #[arg(long, requires = "quota")]
    pub quota_burst: Option<u32>,
    /// Serve the queue's tenants in turn (fair queuing; needs --queue, no --kind).
    #[arg(long)]
    pub fair: bool,
    /// A tenant's weight under fair queuing, TENANT=WEIGHT (repeatable; others weigh 1).
    #[arg(long = "weight", value_parser = weight, requires = "fair")]
    pub weights: Vec<(String, u32)>,
    /// Where to set it, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// A command on one limit.
#[derive(Debug, Clone, Args)]
pub struct LimitsNameArgs {
    /// The limit's name.
    pub name: String,
    /// Where the limit is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// `COUNT/PERIOD` as (count, period in milliseconds).
fn rate(raw: &str) -> Result<(u32, u64), String> {
    let (count, period) = raw
        .split_once('/')
        .ok_or_else(|| format!("{raw:?}: expected COUNT/PERIOD, e.g. 100/60s"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("{raw:?}: the count must be a whole number"))?;
    let period = parse::positive_duration(period)?;
    let ms = u64::try_from(period.as_millis()).map_err(|_| format!("{raw:?}: too long"))?;
    Ok((count, ms))
}

/// `TENANT=WEIGHT` as (tenant, weight).
fn weight(raw: &str) -> Result<(String, u32), String> {
    let (tenant, weight) = raw
        .rsplit_once('=')
        .ok_or_else(|| format!("{raw:?}: expected TENANT=WEIGHT, e.g. acme=3"))?;
    let weight: u32 = weight
        .trim()
        .parse()
        .map_err(|_| format!("{raw:?}: the weight must be a whole number"))?;
    Ok((tenant.to_owned(), weight))
}

/// The limiters in use now (running jobs, throttled until), for `stoker stats`.
pub(crate) async fn usage(backend: &Backend) -> Result<Vec<UsageView>, CliError> {
    Ok(match backend {
        Backend::Direct(direct) => direct
            .client()
            .limit_usage()
            .await?
            .into_iter()
            .map(UsageView::from)
            .collect(),
        Backend::Remote(remote) => {
            remote
                .call::<LimitList>(Method::GET, "v1/limits", None)
                .await?
                .usage
        }
    })
}

/// Prints the limiters in use as a table, if any.
pub(crate) fn print_usage(usage: &[UsageView]) {
    if usage.is_empty() {
        return;
    }
    let mut table = Table::new(&[
        "LIMIT",
        "KEY",
        "RUNNING",
        "TOKENS",
        "NEXT TOKEN",
        "QUOTA USED",
        "HELD BACK",
        "THROTTLED UNTIL",
    ]);
    let or_dash = |value: Option<u32>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for usage in usage {
        table.row(vec![
            usage.name.clone(),
            if usage.key.is_empty() {
                "-".to_owned()
            } else {
                usage.key.clone()
            },
            match usage.cap {
                Some(cap) => format!("{}/{cap}", usage.running),
                None => usage.running.to_string(),
            },
            or_dash(usage.tokens_left),
            output::time_or_dash(usage.next_token_at),
            or_dash(usage.quota_used),
            format!(
                "{}{}",
                usage.held_back,
                if usage.held_back_more { "+" } else { "" }
            ),
            output::time_or_dash(usage.throttled_until),
        ]);
    }
    print!("{}", table.render());
}

/// Runs a `stoker limits` command.
pub(crate) async fn run(command: LimitsCommand) -> Result<(), CliError> {
    match command {
        LimitsCommand::List(target) => {
            let backend = target.connect().await?;
            let list = match &backend {
                Backend::Direct(direct) => {
                    let client = direct.client();
                    LimitList {
                        limits: client
                            .limits()
                            .await?
                            .into_iter()
                            .map(LimitView::from)
                            .collect(),
                        usage: client
                            .limit_usage()
                            .await?
                            .into_iter()
                            .map(UsageView::from)
                            .collect(),
                    }
                }
                Backend::Remote(remote) => {
                    remote
                        .call::<LimitList>(Method::GET, "v1/limits", None)
                        .await?
                }
            };
            print_list(&list, target.json);
            Ok(())
        }
        LimitsCommand::Set(args) => {
            let rate = args.rate.map(|(count, period_ms)| RateBody {
                count,
                period_ms,
                burst: args.burst.unwrap_or(1),
            });
            let quota = args.quota.map(|(count, period_ms)| RateBody {
                count,
                period_ms,
                burst: args.quota_burst.unwrap_or(1),
            });
            let fair = args.fair.then(|| FairBody {
                weights: args.weights.iter().cloned().collect(),
            });
            let backend = args.target.connect().await?;
            let view: LimitView = match &backend {
                Backend::Direct(direct) => {
                    let key = stoker::LimitKey::parse(&args.key)
                        .map_err(|err| CliError::Invalid(format!("invalid key: {}", err.reason)))?;
                    direct
                        .client()
                        .limit_set(stoker::LimitSpec {
                            name: args.name,
                            queue: args.queue,
                            kind: args.kind,
                            key,
                            rate: rate.map(|rate| stoker::Rate {
                                count: rate.count,
                                period_ms: rate.period_ms,
                                burst: rate.burst,
                            }),
                            concurrency: args.concurrency,
                            fair: fair.map(|fair| stoker::Fair {
                                weights: fair.weights,
                            }),
                            quota: quota.map(stoker::Rate::from),
                        })
                        .await?
                        .into()
                }
                Backend::Remote(remote) => {
                    let mut body = json!({ "key": args.key });
                    if let Some(queue) = args.queue {
                        body["queue"] = json!(queue);
                    }
                    if let Some(kind) = args.kind {
                        body["kind"] = json!(kind);
                    }
                    if let Some(rate) = rate {
                        body["rate"] = json!(rate);
                    }
                    if let Some(concurrency) = args.concurrency {
                        body["concurrency"] = json!(concurrency);
                    }
                    if let Some(fair) = fair {
                        body["fair"] = json!(fair);
                    }
                    if let Some(quota) = quota {
                        body["quota"] = json!(quota);
                    }
                    let path = format!("v1/limits/{}", args.name);
                    remote
                        .call::<LimitView>(Method::PUT, &path, Some(&body))
                        .await?
                }
            };
            if args.target.json {
                output::json(&view);
            } else {
                println!("set limit {}: {}", view.name, describe(&view));
            }
            Ok(())
        }
        LimitsCommand::Delete(args) => {
            let backend = args.target.connect().await?;
            let view: LimitView = match &backend {
                Backend::Direct(direct) => direct.client().limit_delete(&args.name).await?.into(),
                Backend::Remote(remote) => {
                    let path = format!("v1/limits/{}", args.name);
                    remote
                        .call::<LimitView>(Method::DELETE, &path, None)
                        .await?
                }
            };
            if args.target.json {
                output::json(&view);
            } else {
                println!("deleted limit {}", view.name);
            }
            Ok(())
        }
    }
}

/// A limit in words: `100/60000ms burst 1, 5 running, per tenant, queue mail, kind send`.
fn describe(view: &LimitView) -> String {
    let mut parts = Vec::new();
    if let Some(rate) = &view.rate {
        parts.push(format!(
            "{}/{}ms burst {}",
            rate.count, rate.period_ms, rate.burst
        ));
    }
    if let Some(concurrency) = view.concurrency {
        parts.push(format!("{concurrency} running"));
    }
    if let Some(fair) = &view.fair {
        parts.push(fair_text(fair));
    }
    if let Some(quota) = &view.quota {
        parts.push(format!(
            "quota {}/{}ms burst {}",
            quota.count, quota.period_ms, quota.burst
        ));
    }
    parts.push(format!("per {}", view.key));
    if let Some(queue) = &view.queue {
        parts.push(format!("queue {queue}"));
    }
    if let Some(kind) = &view.kind {
        parts.push(format!("kind {kind}"));
    }
    parts.join(", ")
}

/// Fair queuing in words: `fair` or `fair (acme=3, beta=2)`.
fn fair_text(fair: &FairBody) -> String {
    if fair.weights.is_empty() {
        return "fair".to_owned();
    }
    let weights: Vec<String> = fair
        .weights
        .iter()
        .map(|(tenant, weight)| format!("{tenant}={weight}"))
        .collect();
    format!("fair ({})", weights.join(", "))
}

fn print_list(list: &LimitList, json: bool) {
    if json {
        output::json(list);
        return;
    }
    if list.limits.is_empty() {
        println!("no limits");
        return;
    }
    let mut table = Table::new(&[
        "NAME",
        "QUEUE",
        "KIND",
        "KEY",
        "RATE",
        "CONCURRENCY",
        "FAIR",
        "QUOTA",
    ]);
    for limit in &list.limits {
        table.row(vec![
            limit.name.clone(),
            limit.queue.clone().unwrap_or_else(|| "*".to_owned()),
            limit.kind.clone().unwrap_or_else(|| "*".to_owned()),
            limit.key.clone(),
            limit.rate.as_ref().map_or_else(
                || "-".to_owned(),
                |rate| format!("{}/{}ms burst {}", rate.count, rate.period_ms, rate.burst),
            ),
            limit
                .concurrency
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            limit
                .fair
                .as_ref()
                .map_or_else(|| "-".to_owned(), fair_text),
            limit.quota.as_ref().map_or_else(
                || "-".to_owned(),
                |quota| {
                    format!(
                        "{}/{}ms burst {}",
                        quota.count, quota.period_ms, quota.burst
                    )
                },
            ),
        ]);
    }
    print!("{}", table.render());
    if !list.usage.is_empty() {
        println!();
        print_usage(&list.usage);
    }
}
