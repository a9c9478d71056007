//! `airlock approvals list|show|approve|deny`: the approval queue through the admin API, as
//! the caller (AIRLOCK_ADMIN_TOKEN, else the signed-in session). Reviewers need not be
//! admins: the gateway lets each caller see and decide what their groups review.

use crate::login;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Held requests (pending unless `--state` says otherwise; `all` for every state).
    List {
        /// The gateway's admin base URL, e.g. http://127.0.0.1:8081
        #[arg(long)]
        admin: String,
        #[arg(long, default_value = "pending")]
        state: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One held request: who sent it, the rule, and the request as it would be forwarded
    /// (every detected value masked), with the hash of the exact body.
    Show {
        #[arg(long)]
        admin: String,
        id: String,
    },
    /// Let a held request go upstream (once). `--grant 30m` also lets the same identity's
    /// requests under the same rule pass without review for that long (at most 24h).
    Approve {
        #[arg(long)]
        admin: String,
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        grant: Option<String>,
    },
    /// Refuse a held request; the requester gets the reason.
    Deny {
        #[arg(long)]
        admin: String,
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Standing grants in force (`--all`: revoked and expired ones too).
    Grants {
        #[arg(long)]
        admin: String,
        #[arg(long)]
        all: bool,
    },
    /// End a standing grant now.
    RevokeGrant {
        #[arg(long)]
        admin: String,
        id: String,
    },
}

pub async fn run(command: ApprovalsCommand, caller: &str) -> anyhow::Result<()> {
    match command {
        ApprovalsCommand::List { admin, state, json } => {
            let text = login::admin_get(&admin, &format!("/admin/approvals?state={state}"), caller)
                .await?;
            if json {
                println!("{text}");
                return Ok(());
            }
            let v: Value = serde_json::from_str(&text)?;
            let list = v["approvals"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no approvals ({state})");
            }
            let now = airlock_store::now_ms();
            for a in list {
                let left = (a["expires_ms"].as_i64().unwrap_or(0) - now).max(0) / 1000;
                println!(
                    "{}  {:<9} {:<20} rule {:<20} {:<24} {}",
                    a["id"].as_str().unwrap_or("?"),
                    a["state"].as_str().unwrap_or("?"),
                    a["requester"]["subject"].as_str().unwrap_or("?"),
                    a["rule"].as_str().unwrap_or("?"),
                    a["model"].as_str().unwrap_or("-"),
                    if a["state"] == "pending" {
                        format!("expires in {left}s")
                    } else {
                        String::new()
                    },
                );
            }
        }
        ApprovalsCommand::Show { admin, id } => {
            let text = login::admin_get(&admin, &format!("/admin/approvals/{id}"), caller).await?;
            let v: Value = serde_json::from_str(&text)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ApprovalsCommand::Approve { admin, id, reason, grant } => {
            let path = format!("/admin/approvals/{id}/approve");
            let body = json!({ "reason": reason, "grant": grant });
            let answer: Value =
                serde_json::from_str(&login::admin_post(&admin, &path, caller, &body).await?)?;
            match answer["grant"]["id"].as_str() {
                Some(g) => {
                    println!("approved {id}; grant {g} until {}", answer["grant"]["until_ms"])
                }
                None => println!("approved {id}"),
            }
        }
        ApprovalsCommand::Deny { admin, id, reason } => {
            let path = format!("/admin/approvals/{id}/deny");
            login::admin_post(&admin, &path, caller, &json!({ "reason": reason })).await?;
            println!("denied {id}");
        }
        ApprovalsCommand::Grants { admin, all } => {
            let path =
                if all { "/admin/approvals/grants?all=1" } else { "/admin/approvals/grants" };
            let v: Value = serde_json::from_str(&login::admin_get(&admin, path, caller).await?)?;
            println!("{}", serde_json::to_string_pretty(&v["grants"])?);
        }
        ApprovalsCommand::RevokeGrant { admin, id } => {
            let path = format!("/admin/approvals/grants/{id}/revoke");
            login::admin_post(&admin, &path, caller, &json!({})).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}
