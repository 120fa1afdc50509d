//! `stoker keys`: encryption keys at rest (issue 17 item 4). The keys come from
//! `STOKER_ENCRYPTION_KEYS` or a key file (`--key-file`, `STOKER_ENCRYPTION_KEY_FILE`), as for
//! `stoker serve`; the command works on the database itself, since resealing needs the keys
//! and a server should not be handed them over HTTP.
//!
//! Rotating: add a key with a higher id to every server's keys (the highest seals new jobs,
//! every key opens), restart them, run `stoker keys rotate` (workers go on meanwhile: it
//! reseals in short batches), and remove the old key once `stoker keys status` shows it seals
//! nothing.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::backend::Backend;
use super::output::{self, Table};
use super::{CliError, Target};
use crate::config::{EncryptionSettings, KEY_FILE_ENV};

/// The commands of `stoker keys`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// How many stored values each key id seals, and which keys this process holds.
    Status(KeysArgs),
    /// Reseal every value sealed under an older key with the active (highest) key, in
    /// batches, while workers go on. Safe to stop and run again.
    Rotate(KeysRotateArgs),
}

/// Where the keys and the database are.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    /// A key file of id=base64key lines. [default: the STOKER_ENCRYPTION_KEYS variable]
    #[arg(long, env = KEY_FILE_ENV, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// The database, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// `stoker keys rotate`.
#[derive(Debug, Clone, Args)]
pub struct KeysRotateArgs {
    /// Jobs read and resealed per batch (one short transaction each).
    #[arg(long, default_value_t = stoker::ROTATE_BATCH_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    /// The keys and the database.
    #[command(flatten)]
    pub keys: KeysArgs,
}

/// The client of the database the target names, holding the keys.
async fn client(args: &KeysArgs) -> Result<stoker::Client, CliError> {
    let mut settings = EncryptionSettings {
        key_file: args.key_file.clone(),
        ..EncryptionSettings::default()
    };
    settings
        .read_keys(std::env::var(stoker::KEYS_ENV).ok().as_deref(), None)
        .map_err(|err| CliError::Invalid(err.to_string()))?;
    let Some(encryption) = settings.encryption() else {
        return Err(CliError::Invalid(format!(
            "no encryption keys: set {} or give --key-file",
            stoker::KEYS_ENV
        )));
    };
    match args.target.connect().await? {
        Backend::Direct(direct) => Ok(direct.client().clone().with_encryption(encryption)),
        Backend::Remote(_) => Err(CliError::Invalid(
            "stoker keys works on the database (--database-url), where the keys are used; \
             not through --server"
                .to_owned(),
        )),
    }
}

/// Runs a `stoker keys` command.
pub(crate) async fn run(command: KeysCommand) -> Result<(), CliError> {
    match command {
        KeysCommand::Status(args) => {
            let status = client(&args).await?.keys_status().await?;
            if args.target.json {
                output::json(&status);
                return Ok(());
            }
            println!(
                "active key: {}; keys held: {:?}",
                status.active, status.held
            );
            let mut table = Table::new(&["KEY", "SEALED VALUES", "HELD"]);
            for (kid, count) in &status.values_by_key {
                let held = if status.held.contains(kid) {
                    "yes"
                } else {
                    "NO"
                };
                table.row(vec![kid.to_string(), count.to_string(), held.to_owned()]);
            }
            print!("{}", table.render());
            Ok(())
        }
        KeysCommand::Rotate(args) => {
            let client = client(&args.keys).await?;
            let json = args.keys.target.json;
            let report = client
                .keys_rotate(args.batch, |report| {
                    if !json {
                        eprintln!("{report}");
                    }
                })
                .await?;
            // A failed command prints nothing on standard output: the report goes in the error.
            if report.unreadable > 0 {
                return Err(CliError::Invalid(format!(
                    "{report}: {} values could not be opened with the keys given (their key is \
                     missing or wrong) and were left as they are; see the log for which jobs",
                    report.unreadable
                )));
            }
            if json {
                output::json(&json!(report));
            } else {
                println!("{report}");
            }
            Ok(())
        }
    }
}
