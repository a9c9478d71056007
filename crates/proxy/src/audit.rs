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
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
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
            window: config.audit.commit_window,
            short_slice: config.audit.durability == Durability::Batch,
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

    /// Transactions committed and the entries in them, since start.
    pub fn commits(&self) -> (u64, u64) {
        (self.writer.commits(), self.writer.committed())
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
            detail: airlock_audit::detail(&detail),
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
/// `max` bytes as text with the truncation recorded. `None` when bodies are not kept. The
/// body is serialised here, once; the audit entries copy the text.
pub fn capped_body(body: serde_json::Value, max: usize) -> Option<Box<RawValue>> {
    if max == 0 {
        return None;
    }
    // Serialised straight into a RawValue (no second parse to validate what was just written).
    let raw = serde_json::value::to_raw_value(&body).ok()?;
    if raw.get().len() <= max {
        return Some(raw);
    }
    let text = raw.get();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    serde_json::value::to_raw_value(
        &json!({"airlock_truncated": true, "bytes": text.len(), "text": &text[..cut]}),
    )
    .ok()
}

/// Counts per detector, as a JSON object.
struct Counts<'a>(&'a [(String, u32)]);

impl Serialize for Counts<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// An entry's `detail`, borrowed from the record and serialised straight into its text.
/// Field order is the order in the stored JSON.
#[derive(Serialize)]
struct Detail<'a> {
    method: &'a str,
    route: &'static str,
    issuer: Option<&'a str>,
    token_id: Option<&'a str>,
    client_addr: Option<&'a str>,
    user_agent: Option<&'a str>,
    stream: bool,
    request_body: Option<&'a RawValue>,
    policy: PolicyDetail<'a>,
    limited_by: Option<&'a str>,
    approval: Option<&'a crate::record::ApprovalNote>,
    /// Only in a final entry (`response`, `record`).
    #[serde(flatten)]
    end: Option<EndDetail<'a>>,
}

#[derive(Serialize)]
struct PolicyDetail<'a> {
    version: Option<&'a str>,
    rules: &'a [crate::record::RuleHit],
    redactions: Counts<'a>,
    clamped_max_tokens: Option<Clamp>,
    stripped_tools: &'a [String],
}

#[derive(Serialize)]
struct Clamp {
    from: u64,
    to: u64,
}

#[derive(Serialize)]
struct EndDetail<'a> {
    minted_token_id: Option<&'a str>,
    outcome: &'static str,
    reason: &'static str,
    upstream: UpstreamDetail<'a>,
    usage: Usage,
    timings_us: Timings,
    events: u64,
    masked: Counts<'a>,
    response_body: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct UpstreamDetail<'a> {
    status: Option<u16>,
    request_id: Option<&'a str>,
    attempts: u32,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

#[derive(Serialize)]
struct Timings {
    total: u64,
    upstream: Option<u64>,
    first_byte: Option<u64>,
}

/// An entry for `data`. A `request` entry holds what is known before forwarding; the final
/// entry holds everything.
pub fn draft(kind: Kind, data: &RecordData) -> Draft {
    let us = |d: std::time::Duration| d.as_micros() as u64;
    let end = (kind != Kind::Request).then(|| EndDetail {
        minted_token_id: data.minted_token_id.as_deref(),
        outcome: data.outcome.as_str(),
        reason: data.reason,
        upstream: UpstreamDetail {
            status: data.upstream_status,
            request_id: data.upstream_request_id.as_deref(),
            attempts: data.upstream_attempts,
        },
        usage: Usage { input_tokens: data.input_tokens, output_tokens: data.output_tokens },
        timings_us: Timings {
            total: us(data.duration),
            upstream: data.upstream_latency.map(us),
            first_byte: data.time_to_first_byte.map(us),
        },
        events: data.events,
        masked: Counts(&data.masked),
        response_body: data.response_body.as_deref(),
    });
    let detail = Detail {
        method: &data.method,
        route: data.route,
        issuer: data.issuer.as_deref(),
        token_id: data.token_id.as_deref(),
        client_addr: data.client_addr.as_deref(),
        user_agent: data.user_agent.as_deref(),
        stream: data.stream,
        // The request body is stored once: in the `request` entry, or in the lone `record`.
        request_body: if kind == Kind::Response { None } else { data.request_body.as_deref() },
        policy: PolicyDetail {
            version: data.policy_version.as_deref(),
            rules: &data.rules,
            redactions: Counts(&data.redactions),
            clamped_max_tokens: data.clamped.map(|(from, to)| Clamp { from, to }),
            stripped_tools: &data.stripped_tools,
        },
        limited_by: data.limited_by.as_deref(),
        approval: data.approval.as_ref(),
        end,
    };
    Draft {
        kind,
        request_id: data.request_id.clone(),
        at_ms: airlock_store::now_ms(),
        index: index(data, kind != Kind::Request),
        detail: airlock_audit::detail(&detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ApprovalNote, RecordSink, RequestRecord, RuleHit};
    use serde_json::Value;

    struct Nowhere;
    impl RecordSink for Nowhere {
        fn record(&self, _: &RecordData) {}
    }

    fn data() -> RecordData {
        let record =
            RequestRecord::start("req_1".into(), &http::Method::POST, Arc::new(Nowhere), None);
        let mut d = record.data.clone();
        d.route = "messages";
        d.rules = vec![RuleHit { id: "r1".into(), action: "redact", mode: "enforce" }];
        d.redactions = vec![("email".into(), 2)];
        d.clamped = Some((8000, 4096));
        d.request_body =
            capped_body(json!({"messages": [{"role": "user", "content": "hi [EMAIL]"}]}), 1024);
        d.response_body = capped_body(json!({"content": [{"type": "text", "text": "ok"}]}), 1024);
        d.approval = Some(ApprovalNote {
            id: "apr_1".into(),
            rule: "r1".into(),
            mode: "wait",
            state: "approved",
            decided_by: Some("bob".into()),
            reason: None,
            body_hash: "ab".into(),
            waited_ms: 7,
        });
        d
    }

    fn detail(kind: Kind, d: &RecordData) -> Value {
        serde_json::from_str(draft(kind, d).detail.get()).unwrap()
    }

    #[test]
    fn the_request_body_is_stored_once() {
        let d = data();
        let request = detail(Kind::Request, &d);
        let response = detail(Kind::Response, &d);
        let record = detail(Kind::Record, &d);
        assert_eq!(request["request_body"]["messages"][0]["content"], "hi [EMAIL]");
        assert_eq!(response["request_body"], Value::Null);
        assert_eq!(record["request_body"], request["request_body"]);
        // What happened at the end is only in the final entry.
        assert!(request.get("outcome").is_none() && request.get("response_body").is_none());
        assert_eq!(response["response_body"]["content"][0]["text"], "ok");
        assert_eq!(response["outcome"], "client_aborted");
    }

    #[test]
    fn entries_keep_their_shape() {
        let v = detail(Kind::Response, &data());
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "method",
                "route",
                "issuer",
                "token_id",
                "client_addr",
                "user_agent",
                "stream",
                "request_body",
                "policy",
                "limited_by",
                "approval",
                "minted_token_id",
                "outcome",
                "reason",
                "upstream",
                "usage",
                "timings_us",
                "events",
                "masked",
                "response_body"
            ]
        );
        assert_eq!(
            v["policy"]["rules"],
            json!([{"id": "r1", "action": "redact", "mode": "enforce"}])
        );
        assert_eq!(v["policy"]["redactions"], json!({"email": 2}));
        assert_eq!(v["policy"]["clamped_max_tokens"], json!({"from": 8000, "to": 4096}));
        assert_eq!(v["approval"]["body_sha256"], "ab");
        assert_eq!(v["approval"]["decided_by"], "bob");
        assert_eq!(v["upstream"]["attempts"], 0);
        assert_eq!(v["masked"], json!({}));
    }

    #[test]
    fn a_long_body_is_cut_on_a_character_boundary() {
        let body = json!({"text": "é".repeat(100)});
        let whole = capped_body(body.clone(), 1 << 20).unwrap();
        assert_eq!(whole.get(), body.to_string());
        let cut: Value =
            serde_json::from_str(capped_body(body.clone(), 20).unwrap().get()).unwrap();
        assert_eq!(cut["airlock_truncated"], true);
        assert_eq!(cut["bytes"], body.to_string().len());
        let text = cut["text"].as_str().unwrap();
        assert!(text.len() <= 20 && body.to_string().starts_with(text), "{text}");
        assert!(capped_body(body, 0).is_none());
    }
}
