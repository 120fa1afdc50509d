//! `stoker tokens`: stored API tokens (issue 17), on a database or through a server. Both
//! paths answer with the API's views, so the output (and `--json`) is the same either way.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::backend::Backend;
use super::output::{self, Table};
use super::{parse, CliError, Target};
use crate::api::tokens::{CreatedTokenView, TokenList, TokenView};

/// The commands of `stoker tokens`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token; its secret is printed this once.
    Create(TokensCreateArgs),
    /// List tokens (never their secrets).
    List(Target),
    /// Revoke a token: servers refuse it within seconds.
    Revoke(TokensIdArgs),
    /// Replace a token by a new one with the same name, scopes, tenant and expiry; the old one
    /// is revoked. The new secret is printed this once.
    Rotate(TokensIdArgs),
}

/// `stoker tokens create`.
#[derive(Debug, Clone, Args)]
pub struct TokensCreateArgs {
    /// A name for people, e.g. billing.
    #[arg(long)]
    pub name: String,
    /// A scope: admin, operate, enqueue, work or read (repeat for several).
    #[arg(long = "scope", required = true)]
    pub scopes: Vec<String>,
    /// Bind it to a tenant: it then sees and touches only that tenant's jobs.
    #[arg(long)]
    pub tenant: Option<String>,
    /// How long it works, e.g. 90d or 12h. [default: no expiry]
    #[arg(long, value_parser = parse::positive_duration)]
    pub expires: Option<Duration>,
    /// Where to create it, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// A command on one token.
#[derive(Debug, Clone, Args)]
pub struct TokensIdArgs {
    /// The token's id (the 8 characters after `stk_`).
    pub id: String,
    /// Where the token is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

fn expiry(expires: Option<Duration>) -> Result<Option<DateTime<Utc>>, CliError> {
    expires
        .map(|d| {
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| Utc::now().checked_add_signed(d))
                .ok_or_else(|| CliError::Invalid("invalid expires: too far away".to_owned()))
        })
        .transpose()
}

fn created_view(created: stoker::CreatedToken) -> CreatedTokenView {
    CreatedTokenView {
        token: created.row.into(),
        secret: created.token,
    }
}

/// Runs a `stoker tokens` command.
pub(crate) async fn run(command: TokensCommand) -> Result<(), CliError> {
    match command {
        TokensCommand::Create(args) => {
            let expires_at = expiry(args.expires)?;
            let backend = args.target.connect().await?;
            let view = match &backend {
                Backend::Direct(direct) => created_view(
                    direct
                        .client()
                        .token_create(stoker::NewToken {
                            name: args.name,
                            scopes: args.scopes,
                            tenant: args.tenant,
                            expires_at,
                        })
                        .await?,
                ),
                Backend::Remote(remote) => {
                    let body = json!({
                        "name": args.name,
                        "scopes": args.scopes,
                        "tenant": args.tenant,
                        "expires_at": expires_at,
                    });
                    remote
                        .call::<CreatedTokenView>(Method::POST, "v1/tokens", Some(&body))
                        .await?
                }
            };
            print_created(&view, args.target.json);
            Ok(())
        }
        TokensCommand::List(target) => {
            let backend = target.connect().await?;
            let tokens: Vec<TokenView> = match &backend {
                Backend::Direct(direct) => direct
                    .client()
                    .token_list()
                    .await?
                    .into_iter()
                    .map(TokenView::from)
                    .collect(),
                Backend::Remote(remote) => {
                    remote
                        .call::<TokenList>(Method::GET, "v1/tokens", None)
                        .await?
                        .tokens
                }
            };
            print_list(&tokens, target.json);
            Ok(())
        }
        TokensCommand::Revoke(args) => {
            let backend = args.target.connect().await?;
            let view: TokenView = match &backend {
                Backend::Direct(direct) => direct.client().token_revoke(&args.id).await?.into(),
                Backend::Remote(remote) => {
                    let path = format!("v1/tokens/{}/revoke", args.id);
                    remote
                        .call::<TokenView>(Method::POST, &path, Some(&json!({})))
                        .await?
                }
            };
            if args.target.json {
                output::json(&view);
            } else {
                println!("revoked token {} ({})", view.id, view.name);
            }
            Ok(())
        }
        TokensCommand::Rotate(args) => {
            let backend = args.target.connect().await?;
            let view = match &backend {
                Backend::Direct(direct) => {
                    created_view(direct.client().token_rotate(&args.id).await?)
                }
                Backend::Remote(remote) => {
                    let path = format!("v1/tokens/{}/rotate", args.id);
                    remote
                        .call::<CreatedTokenView>(Method::POST, &path, Some(&json!({})))
                        .await?
                }
            };
            print_created(&view, args.target.json);
            Ok(())
        }
    }
}

fn print_created(view: &CreatedTokenView, json: bool) {
    if json {
        output::json(view);
        return;
    }
    println!("token {} ({})", view.token.id, view.token.name);
    println!("secret (shown only now): {}", view.secret);
}

fn print_list(tokens: &[TokenView], json: bool) {
    if json {
        output::json(&json!({ "tokens": tokens }));
        return;
    }
    if tokens.is_empty() {
        println!("no stored tokens");
        return;
    }
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "SCOPES",
        "TENANT",
        "EXPIRES",
        "LAST USED",
        "REVOKED",
    ]);
    for t in tokens {
        table.row(vec![
            t.id.clone(),
            t.name.clone(),
            t.scopes.join(","),
            t.tenant.clone().unwrap_or_else(|| "-".to_owned()),
            output::time_or_dash(t.expires_at),
            output::time_or_dash(t.last_used_at),
            output::time_or_dash(t.revoked_at),
        ]);
    }
    print!("{}", table.render());
}
