//! `stoker events` (issue 13, live events): one line per job change and snapshot, from a
//! server's `GET /v1/events` or straight from a database.

use std::time::Duration;

use clap::Args;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use stoker::{Event, EventFilter, JobEvent, JobId, Snapshot};

use super::backend::Backend;
use super::error::CliError;
use super::{parse, Target};

/// Options of `stoker events`.
#[derive(Debug, Clone, Default, Args)]
pub struct EventsArgs {
    /// Keep printing events until interrupted (or --timeout). Without it (and without --job)
    /// the command prints the current snapshot and exits.
    #[arg(long)]
    pub follow: bool,
    /// Follow this job until it is finished, then exit; repeat for several (at most 100).
    #[arg(long = "job", value_name = "ID", value_parser = parse::job_id)]
    pub jobs: Vec<JobId>,
    /// Only jobs with this correlation id.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// Only jobs of this queue.
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// Only jobs of this kind.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only this tenant's jobs.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Leave out the once-a-second snapshots (with --follow; --job leaves them out anyway).
    #[arg(long)]
    pub no_snapshots: bool,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse::positive_duration)]
    pub timeout: Option<Duration>,
    /// Where to read events, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// One event as `--json` prints it: `{"event": "job", "data": {...}}`.
#[derive(Debug, Serialize, Deserialize)]
struct JsonLine<'a> {
    event: &'a str,
    data: serde_json::Value,
}

/// What to stream, and when to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Print the first snapshot and stop.
    Once,
    /// Print until the followed jobs end, the timeout, or an interrupt.
    Follow,
}

impl EventsArgs {
    fn mode(&self) -> Mode {
        if self.follow || !self.jobs.is_empty() {
            Mode::Follow
        } else {
            Mode::Once
        }
    }

    fn filter(&self) -> EventFilter {
        let snapshot = match self.mode() {
            Mode::Once => true,
            Mode::Follow => self.jobs.is_empty() && !self.no_snapshots,
        };
        EventFilter {
            jobs: self.jobs.clone(),
            correlation_id: self.correlation_id.clone(),
            queue: self.queue.clone(),
            kind: self.kind.clone(),
            tenant: self.tenant.clone(),
            snapshot,
            job_events: self.mode() == Mode::Follow,
        }
    }

    /// The query string of `GET /v1/events` for the same filter.
    fn query(&self) -> Vec<(&'static str, String)> {
        let filter = self.filter();
        let mut query: Vec<(&'static str, String)> = filter
            .jobs
            .iter()
            .map(|id| ("job", id.0.to_string()))
            .collect();
        let texts = [
            ("correlation_id", &filter.correlation_id),
            ("queue", &filter.queue),
            ("kind", &filter.kind),
            ("tenant", &filter.tenant),
        ];
        for (name, value) in texts {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        }
        query.push(("snapshot", filter.snapshot.to_string()));
        query.push(("jobs", filter.job_events.to_string()));
        if let Some(timeout) = self.timeout {
            query.push((
                "timeout_secs",
                timeout.as_secs().clamp(1, 86_400).to_string(),
            ));
        }
        query
    }
}

/// A one-line description of a job event, for people.
fn job_line(job: &JobEvent) -> String {
    let mut line = format!(
        "{} job {} {} queue={} kind={} attempt={}",
        job.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        job.id,
        job.state,
        job.queue,
        job.kind,
        job.attempt
    );
    if let Some(tenant) = &job.tenant {
        line.push_str(&format!(" tenant={tenant}"));
    }
    if let Some(correlation) = &job.correlation_id {
        line.push_str(&format!(" correlation_id={correlation}"));
    }
    if let Some(error) = &job.error {
        line.push_str(&format!(" error={error:?}"));
    }
    line
}

/// A one-line summary of a snapshot, for people.
fn snapshot_line(snapshot: &Snapshot) -> String {
    let s = &snapshot.states;
    let m = &snapshot.minute;
    format!(
        "{} snapshot available={} scheduled={} running={} retryable={} completed={} \
         discarded={} cancelled={} queues={} workers_alive={} | this minute: enqueued={} \
         started={} completed={} failed={}",
        snapshot
            .at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        s.available,
        s.scheduled,
        s.running,
        s.retryable,
        s.completed,
        s.discarded,
        s.cancelled,
        snapshot.queues.len(),
        snapshot.workers_alive,
        m.enqueued,
        m.started,
        m.completed,
        m.failed
    )
}

/// Prints `value` as JSON on one line: a stream prints one object per line.
fn json_line<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string(value) {
        Ok(text) => println!("{text}"),
        Err(err) => eprintln!("error: could not encode the output as JSON: {err}"),
    }
}

/// Prints one event; `json` prints `{"event", "data"}` objects, one per line.
fn print(event: &Event, json: bool) {
    if json {
        let (name, data) = match event {
            Event::Job(job) => ("job", serde_json::to_value(job)),
            Event::Snapshot(snapshot) => ("snapshot", serde_json::to_value(&**snapshot)),
            Event::End => ("end", Ok(serde_json::json!({}))),
        };
        json_line(&JsonLine {
            event: name,
            data: data.unwrap_or_default(),
        });
        return;
    }
    match event {
        Event::Job(job) => println!("{}", job_line(job)),
        Event::Snapshot(snapshot) => println!("{}", snapshot_line(snapshot)),
        Event::End => println!("end: every followed job is finished"),
    }
}

/// `stoker events`.
///
/// # Errors
///
/// Bad flags (more than 100 jobs, a bad queue name), a followed job that does not exist, or
/// an unreachable database or server.
pub(crate) async fn events(args: EventsArgs) -> Result<(), CliError> {
    if args.jobs.len() > stoker::EVENTS_MAX_JOBS {
        return Err(CliError::Invalid(format!(
            "--job names {} jobs; at most {} can be followed",
            args.jobs.len(),
            stoker::EVENTS_MAX_JOBS
        )));
    }
    let backend = args.target.connect().await?;
    let mode = args.mode();
    let json = args.target.json;
    let deadline = args.timeout;
    let run = async {
        match &backend {
            Backend::Direct(direct) => {
                let mut events = direct.client().events(args.filter()).await?;
                while let Some(event) = events.next().await {
                    print(&event, json);
                    if mode == Mode::Once || event == Event::End {
                        break;
                    }
                }
                Ok(())
            }
            Backend::Remote(remote) => {
                let request = remote
                    .stream_request(Method::GET, "v1/events")?
                    .query(&args.query());
                let mut lines = remote.open_stream(request).await?;
                while let Some((name, data)) = lines.next_event().await? {
                    let event = match name.as_str() {
                        "job" => Event::Job(decode(&data)?),
                        "snapshot" => Event::Snapshot(std::sync::Arc::new(decode(&data)?)),
                        "end" => Event::End,
                        // Newer servers may send more kinds of events: skip them.
                        _ => continue,
                    };
                    print(&event, json);
                    if mode == Mode::Once || event == Event::End {
                        break;
                    }
                }
                Ok(())
            }
        }
    };
    match deadline {
        Some(deadline) => match tokio::time::timeout(deadline, run).await {
            Ok(result) => result,
            Err(_) => Ok(()),
        },
        None => {
            tokio::select! {
                result = run => result,
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(data: &str) -> Result<T, CliError> {
    serde_json::from_str(data).map_err(|err| CliError::Http {
        message: format!("the server sent an event that is not Stoker's: {err}: {data}"),
        source: None,
    })
}

/// The events of an open `text/event-stream` response, read chunk by chunk.
pub(crate) struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub(crate) fn new(response: reqwest::Response) -> Self {
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's name and data, skipping comments; `None` when the server closed the
    /// stream.
    pub(crate) async fn next_event(&mut self) -> Result<Option<(String, String)>, CliError> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block) {
                    return Ok(Some(event));
                }
                continue;
            }
            let chunk = self.response.chunk().await.map_err(|err| CliError::Http {
                message: "the server broke off the event stream".to_owned(),
                source: Some(err),
            })?;
            match chunk {
                Some(bytes) => self
                    .buffer
                    .push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n")),
                None => return Ok(None),
            }
        }
    }
}

/// One server-sent event block: `event:` and `data:` lines (comments and blocks without data
/// are skipped). The event name defaults to `message`, as the format says.
fn parse_block(block: &str) -> Option<(String, String)> {
    let mut name = None;
    let mut data: Option<String> = None;
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => match &mut data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    Some((name.unwrap_or_else(|| "message".to_owned()), data?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_server_sent_event_blocks() {
        assert_eq!(
            parse_block("event: job\ndata: {\"id\":1}\n\n"),
            Some(("job".to_owned(), "{\"id\":1}".to_owned()))
        );
        assert_eq!(parse_block(": keep-alive\n\n"), None);
        assert_eq!(
            parse_block("data: a\ndata: b\n\n"),
            Some(("message".to_owned(), "a\nb".to_owned()))
        );
    }

    #[test]
    fn following_jobs_leaves_out_snapshots_and_once_shows_one() {
        let follow = EventsArgs {
            jobs: vec![JobId(4)],
            ..EventsArgs::default()
        };
        let filter = follow.filter();
        assert!(!filter.snapshot && filter.job_events);
        assert_eq!(
            follow.query(),
            [
                ("job", "4".to_owned()),
                ("snapshot", "false".to_owned()),
                ("jobs", "true".to_owned())
            ]
        );
        let once = EventsArgs::default().filter();
        assert!(once.snapshot && !once.job_events);
        let all = EventsArgs {
            follow: true,
            queue: Some("mailers".into()),
            ..EventsArgs::default()
        };
        assert!(all.filter().snapshot && all.filter().job_events);
    }
}
