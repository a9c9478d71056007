//! The audit log on the request path: what each request's entries hold, and when the request
//! waits for them (`audit.durability`).
//!
//! - `request`: [`RequestRecord::open_audit`](crate::record::RequestRecord::open_audit) commits
//!   the `request` entry before the upstream call and refuses the call (503) if it cannot; the
//!   `response` entry is queued when the request ends.
//! - `strict`: as `request`, and the final entry commits before the response (or, for a
//!   stream, its last frame with `message_stop`) is released.
//! - `batch`: entries are queued and nothing waits.
//!
//! Invariant: entries hold metadata only: no prompt or completion text, no token, no key.

use crate::record::RecordData;
use crate::reject::{Fault, Rejection};
use airlock_audit::{Draft, Index, Kind};
use airlock_authn::SessionKeys;
use airlock_config::{Config, Durability, OnStoreFailure, StoreUrl};
use airlock_store::{Store, StoreError, WriteError, Writer, WriterOptions};
use airlock_wire::ErrorType;
use http::StatusCode;
use serde_json::json;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// Entries sealed per transaction at most.
const MAX_BATCH: usize = 2048;

#[derive(Clone)]
pub struct Audit {
    writer: Writer,
    durability: Durability,
    fail_open: bool,
    max_queue: usize,
    /// A second connection for reads (admin API, revocations), used from blocking tasks.
    reader: Arc<Mutex<Store>>,
    /// This gateway's checkpoint verifier key and checkpoint file (the admin API's verify).
    verifier: airlock_audit::VerifierKey,
    checkpoint_file: std::path::PathBuf,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("chain", &self.writer.chain())
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

pub type Pending = Pin<Box<dyn Future<Output = Result<(), WriteError>> + Send>>;

/// Where the audit files live by default: beside the SQLite database, or `airlock-data`.
pub fn data_dir(store: &StoreUrl) -> PathBuf {
    match store {
        StoreUrl::Sqlite(path) => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from),
        StoreUrl::Postgres(_) => PathBuf::from("airlock-data"),
    }
}

pub fn signing_key_file(config: &Config) -> PathBuf {
    config
        .audit
        .signing_key_file
        .clone()
        .unwrap_or_else(|| data_dir(&config.store).join("audit.key"))
}

pub fn checkpoint_file(config: &Config) -> PathBuf {
    config
        .audit
        .checkpoint_file
        .clone()
        .unwrap_or_else(|| data_dir(&config.store).join("audit-checkpoints.jsonl"))
}

/// This gateway's chain: `audit.instance`, else the host name when it is a valid chain name,
/// else `airlock`.
pub fn chain_name(config: &Config) -> String {
    if let Some(name) = &config.audit.instance {
        return name.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| airlock_audit::valid_chain_name(h))
        .unwrap_or_else(|| "airlock".to_owned())
}

/// Start the audit log for `config` from async code: the blocking setup runs off the async
/// threads, and checkpoints go to `audit.checkpoint_webhook` when one is set (best effort,
/// bounded: at most 64 notes wait; the file and the store always get them).
pub async fn start(config: &Config) -> Result<Audit, StoreError> {
    let hook = match &config.audit.checkpoint_webhook {
        Some(url) => Some(webhook(url.clone())?),
        None => None,
    };
    let config = config.clone();
    tokio::task::spawn_blocking(move || Audit::start(&config, hook))
        .await
        .map_err(|e| StoreError::Setup(format!("audit setup task failed: {e}")))?
}

fn webhook(url: String) -> Result<airlock_store::writer::CheckpointHook, StoreError> {
    let fetcher = crate::fetch::Fetcher::new(std::time::Duration::from_secs(10))
        .map_err(|e| StoreError::Setup(e.to_string()))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
    tokio::spawn(async move {
        while let Some(note) = rx.recv().await {
            match fetcher.post_text(&url, note).await {
                Ok(r) if r.status.is_success() => {}
                Ok(r) => {
                    tracing::warn!(target: "airlock::audit", status = r.status.as_u16(), "checkpoint webhook refused a checkpoint")
                }
                Err(e) => {
                    tracing::warn!(target: "airlock::audit", error = %e, "checkpoint webhook unreachable")
                }
            }
        }
    });
    Ok(Box::new(move |note: &str| {
        if tx.try_send(note.to_owned()).is_err() {
            tracing::warn!(target: "airlock::audit", "checkpoint webhook is behind; a checkpoint was not sent");
        }
    }))
}

impl Audit {
    /// Open the store, claim this gateway's chain and start the writer. Blocking: call it
    /// from a blocking task. `on_checkpoint` receives every signed checkpoint note.
    pub fn start(
        config: &Config,
        on_checkpoint: Option<airlock_store::writer::CheckpointHook>,
    ) -> Result<Audit, StoreError> {
        let key_file = signing_key_file(config);
        let key =
            SessionKeys::load_or_create(&key_file).map_err(|e| StoreError::Setup(e.to_string()))?;
        write_verifier_key(&key_file, &key);
        let verifier = airlock_audit::VerifierKey::of(&key);
        let options = WriterOptions {
            chain: chain_name(config),
            checkpoint_every: config.audit.checkpoint_every,
            checkpoint_interval: config.audit.checkpoint_interval,
            checkpoint_file: Some(checkpoint_file(config)),
            max_batch: MAX_BATCH,
        };
        let writer = Writer::start(&config.store, key, options, on_checkpoint)?;
        let reader = Store::open(&config.store)?;
        Ok(Audit {
            writer,
            durability: config.audit.durability,
            fail_open: config.audit.on_store_failure == OnStoreFailure::FailOpen,
            max_queue: config.audit.max_queue as usize,
            reader: Arc::new(Mutex::new(reader)),
            verifier,
            checkpoint_file: checkpoint_file(config),
        })
    }

    /// Verify every chain in the store with this gateway's key and checkpoint file, as
    /// `airlock audit verify` does by default.
    pub async fn verify(&self) -> Result<Vec<airlock_audit::ChainReport>, StoreError> {
        let keys = vec![self.verifier.clone()];
        let file = self.checkpoint_file.clone();
        self.read(move |store| {
            let external: Vec<String> = std::fs::read_to_string(&file)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["note"].as_str().map(str::to_owned))
                .collect();
            airlock_store::audit::verify(store, &keys, &external)
        })
        .await
    }

    /// Entries waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.writer.depth()
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The writer committed its last group (readiness).
    pub fn healthy(&self) -> bool {
        self.writer.healthy()
    }

    /// Refuse new work when the writer is this far behind (load shedding, not a lost record:
    /// the refusal itself is queued, and in-flight requests bound the overshoot).
    pub fn admit(&self) -> Result<(), Rejection> {
        if self.writer.depth() > self.max_queue {
            return Err(Rejection::new(
                ErrorType::Overloaded,
                "the gateway is overloaded; retry shortly",
                Fault::Internal,
                "audit_queue_full",
            )
            .with_status(StatusCode::SERVICE_UNAVAILABLE));
        }
        Ok(())
    }

    /// Record what will be sent upstream. Returns whether a `request` entry was written (or
    /// queued); an error means the request must not be forwarded.
    pub async fn record_request(&self, data: &RecordData) -> Result<bool, Rejection> {
        let draft = draft(Kind::Request, data);
        if self.durability == Durability::Batch {
            self.writer.append_detached(draft);
            return Ok(true);
        }
        match self.writer.append(draft).await {
            Ok(()) => Ok(true),
            Err(e) if self.fail_open => {
                tracing::error!(target: "airlock::audit", request_id = %data.request_id, error = %e, "audit write failed; forwarding anyway (audit.on_store_failure: fail_open)");
                Ok(false)
            }
            Err(e) => {
                tracing::error!(target: "airlock::audit", request_id = %data.request_id, error = %e, "audit write failed; request refused");
                Err(unavailable())
            }
        }
    }

    /// Queue the request's final entry.
    pub fn close_detached(&self, data: &RecordData, opened: bool) {
        self.writer.append_detached(final_draft(data, opened));
    }

    /// In `strict` mode, the final entry to await before the response is released.
    pub fn close_strict(&self, data: &RecordData, opened: bool) -> Option<Pending> {
        if self.durability != Durability::Strict {
            return None;
        }
        let writer = self.writer.clone();
        let draft = final_draft(data, opened);
        Some(Box::pin(async move { writer.append(draft).await }))
    }

    /// An entry about something other than one request (an approval's notification),
    /// under its own id.
    pub fn event(&self, id: &str, subject: Option<&str>, detail: serde_json::Value) {
        self.writer.append_detached(Draft {
            kind: Kind::Record,
            request_id: id.to_owned(),
            at_ms: airlock_store::now_ms(),
            index: Index {
                subject: subject.map(str::to_owned),
                groups: Vec::new(),
                model: None,
                decision: None,
                rules: Vec::new(),
                status: None,
            },
            detail,
        });
    }

    /// This gateway's chain name (also its instance name in the approval queue).
    pub fn chain(&self) -> &str {
        self.writer.chain()
    }

    /// Wait until every entry queued so far is committed.
    pub async fn sync(&self) -> Result<(), WriteError> {
        self.writer.sync().await
    }

    /// Run `f` on the read connection, off the async threads.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = reader.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut store)
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?
    }

    /// Commit what is queued, sign a last checkpoint, stop the writer.
    pub fn close(&self) {
        self.writer.close();
    }
}

/// The answer when the audit store cannot take the record: nothing was forwarded.
pub fn unavailable() -> Rejection {
    Rejection::new(
        ErrorType::Api,
        "the audit log is unavailable; the request was not forwarded",
        Fault::Internal,
        "audit_unavailable",
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
}

/// The public half of the checkpoint key, beside it, for `airlock audit verify --key`.
fn write_verifier_key(key_file: &std::path::Path, key: &SessionKeys) {
    let path = key_file.with_extension("pub");
    let text = format!("{}\n", airlock_audit::VerifierKey::of(key));
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str())
        && let Err(e) = std::fs::write(&path, text)
    {
        tracing::warn!(target: "airlock::audit", path = %path.display(), error = %e, "cannot write the checkpoint verifier key");
    }
}

fn final_draft(data: &RecordData, opened: bool) -> Draft {
    draft(if opened { Kind::Response } else { Kind::Record }, data)
}

fn index(data: &RecordData, with_status: bool) -> Index {
    Index {
        subject: data.subject.clone(),
        groups: data.groups.clone(),
        model: data.model.clone(),
        decision: data.decision.map(str::to_owned),
        rules: data.rules.iter().map(|r| r.id.clone()).collect(),
        status: if with_status { data.status } else { None },
    }
}

/// A masked body as stored: whole when its JSON is at most `max` bytes, otherwise its first
/// `max` bytes as text with the truncation recorded. `None` when bodies are not kept.
pub fn capped_body(body: serde_json::Value, max: usize) -> Option<serde_json::Value> {
    if max == 0 {
        return None;
    }
    let text = body.to_string();
    if text.len() <= max {
        return Some(body);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(json!({"airlock_truncated": true, "bytes": text.len(), "text": &text[..cut]}))
}

fn counts(c: &[(String, u32)]) -> serde_json::Value {
    serde_json::Value::Object(c.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// An entry for `data`. A `request` entry holds what is known before forwarding; the final
/// entry holds everything.
pub fn draft(kind: Kind, data: &RecordData) -> Draft {
    let us = |d: std::time::Duration| d.as_micros() as u64;
    let mut detail = json!({
        "method": data.method,
        "route": data.route,
        "issuer": data.issuer,
        "token_id": data.token_id,
        "client_addr": data.client_addr,
        "user_agent": data.user_agent,
        "stream": data.stream,
        "request_body": data.request_body,
        "policy": {
            "version": data.policy_version,
            "rules": data.rules.iter().map(|r| json!({"id": r.id, "action": r.action, "mode": r.mode})).collect::<Vec<_>>(),
            "redactions": counts(&data.redactions),
            "clamped_max_tokens": data.clamped.map(|(from, to)| json!({"from": from, "to": to})),
            "stripped_tools": data.stripped_tools,
        },
        "limited_by": data.limited_by,
        "approval": data.approval.as_ref().map(|a| json!({
            "id": a.id,
            "rule": a.rule,
            "mode": a.mode,
            "state": a.state,
            "decided_by": a.decided_by,
            "reason": a.reason,
            "body_sha256": a.body_hash,
            "waited_ms": a.waited_ms,
        })),
    });
    if kind != Kind::Request {
        let extra = json!({
            "minted_token_id": data.minted_token_id,
            "outcome": data.outcome.as_str(),
            "reason": data.reason,
            "upstream": {
                "status": data.upstream_status,
                "request_id": data.upstream_request_id,
                "attempts": data.upstream_attempts,
            },
            "usage": {
                "input_tokens": data.input_tokens,
                "output_tokens": data.output_tokens,
            },
            "timings_us": {
                "total": us(data.duration),
                "upstream": data.upstream_latency.map(us),
                "first_byte": data.time_to_first_byte.map(us),
            },
            "events": data.events,
            "masked": counts(&data.masked),
            "response_body": data.response_body,
        });
        if let (Some(d), serde_json::Value::Object(e)) = (detail.as_object_mut(), extra) {
            d.extend(e);
        }
    }
    Draft {
        kind,
        request_id: data.request_id.clone(),
        at_ms: airlock_store::now_ms(),
        index: index(data, kind != Kind::Request),
        detail,
    }
}
