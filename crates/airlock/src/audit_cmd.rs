//! `airlock audit`: read, verify and prune the audit log, straight from the store.
//!
//! `verify` exits 0 when every chain verifies, 1 when tampering (or a checkpoint problem) is
//! found, 2 when it could not run (configuration, store unreachable).

use airlock_audit::{Row, VerifierKey};
use airlock_authn::SessionKeys;
use airlock_config::Config;
use airlock_config::civil::days_from_civil;
use airlock_store::{Query, Store};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every chain, entry hash and checkpoint signature; report the first bad entry.
    /// Exit status: 0 verified, 1 tampering or a bad checkpoint found, 2 could not run.
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Verifier key file(s) (`name+id+key` lines); default: the gateway's own key.
        #[arg(long)]
        key: Vec<PathBuf>,
        /// Checkpoints kept outside the database (JSON lines); default: audit.checkpoint_file.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// The latest requests, one line each; `-f` keeps following.
    Tail {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// One request, readably: who, what, the decision, how it ended, and its entries.
    Show {
        #[arg(long)]
        config: Option<PathBuf>,
        request_id: String,
    },
    /// Requests matching every filter given, newest first.
    Search {
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        filter: Filter,
    },
    /// Entries matching the filters as JSON lines (the signed bodies, with their hashes).
    Export {
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        filter: Filter,
    },
    /// Delete entries older than DATE, down to a signed checkpoint, keeping the chain
    /// verifiable (the checkpoint becomes the chain's anchor).
    Prune {
        #[arg(long)]
        config: Option<PathBuf>,
        /// `2026-01-31`, `2026-01-31T12:00:00Z`, unix seconds, or an age like `90d`.
        #[arg(long)]
        before: String,
    },
}

#[derive(Debug, Args)]
pub struct Filter {
    #[arg(long)]
    subject: Option<String>,
    #[arg(long)]
    group: Option<String>,
    #[arg(long)]
    rule: Option<String>,
    #[arg(long)]
    decision: Option<String>,
    #[arg(long)]
    model: Option<String>,
    /// Time range start: a date, an RFC 3339 time, unix seconds, or an age like `1h`.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: u64,
}

impl Filter {
    fn query(&self) -> anyhow::Result<Query> {
        let time = |s: &Option<String>| -> anyhow::Result<Option<i64>> {
            s.as_deref().map(|t| parse_time(t).map(|secs| secs * 1000)).transpose()
        };
        Ok(Query {
            subject: self.subject.clone(),
            group: self.group.clone(),
            rule: self.rule.clone(),
            decision: self.decision.clone(),
            model: self.model.clone(),
            request_id: None,
            since_ms: time(&self.since)?,
            until_ms: time(&self.until)?,
            limit: self.limit,
        })
    }
}

/// Run an audit command; returns the process exit status.
pub fn run(
    command: AuditCommand,
    load: impl Fn(Option<&std::path::Path>) -> anyhow::Result<Config>,
) -> anyhow::Result<i32> {
    match command {
        AuditCommand::Verify { config, key, checkpoints } => {
            let config = load(config.as_deref())?;
            verify(&config, &key, checkpoints)
        }
        AuditCommand::Tail { config, lines, follow } => {
            let config = load(config.as_deref())?;
            let mut store = open(&config)?;
            let mut rows = store.search(&Query { limit: lines, ..Query::default() })?;
            rows.reverse();
            let mut seen: std::collections::HashSet<(String, u64)> =
                std::collections::HashSet::new();
            let mut since = rows.last().map_or(0, |r| r.at_ms);
            for r in &rows {
                seen.insert((r.chain.clone(), r.seq));
                println!("{}", line(r));
            }
            if !follow {
                return Ok(0);
            }
            loop {
                std::thread::sleep(std::time::Duration::from_millis(500));
                let mut fresh = store.search(&Query {
                    since_ms: Some(since),
                    limit: 10_000,
                    ..Query::default()
                })?;
                fresh.reverse();
                for r in fresh {
                    since = since.max(r.at_ms);
                    if seen.insert((r.chain.clone(), r.seq)) {
                        println!("{}", line(&r));
                    }
                }
            }
        }
        AuditCommand::Show { config, request_id } => {
            let config = load(config.as_deref())?;
            let mut rows = open(&config)?.search(&Query {
                request_id: Some(request_id.clone()),
                limit: 100,
                ..Query::default()
            })?;
            if rows.is_empty() {
                bail!("no audit entries for {request_id}");
            }
            rows.sort_by_key(|r| (r.chain.clone(), r.seq));
            print!("{}", render(&rows));
            Ok(0)
        }
        AuditCommand::Search { config, filter } => {
            let config = load(config.as_deref())?;
            for r in open(&config)?.search(&filter.query()?)? {
                println!("{}", line(&r));
            }
            Ok(0)
        }
        AuditCommand::Export { config, filter } => {
            let config = load(config.as_deref())?;
            for r in open(&config)?.search(&filter.query()?)? {
                let mut v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("prev_hash".into(), r.prev_hash.clone().into());
                    o.insert("hash".into(), r.hash.clone().into());
                }
                println!("{v}");
            }
            Ok(0)
        }
        AuditCommand::Prune { config, before } => {
            let config = load(config.as_deref())?;
            let keys = vec![VerifierKey::of(&own_key(&config)?)];
            let before = parse_time(&before)? as u64;
            let pruned = airlock_store::audit::prune(&mut open(&config)?, &keys, before)?;
            if pruned.is_empty() {
                println!("nothing to prune: no checkpoint older than that");
            }
            for (chain, n) in pruned {
                println!("chain {chain}: {n} entries pruned");
            }
            Ok(0)
        }
    }
}

fn open(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.store).context("cannot open the store")
}

fn own_key(config: &Config) -> anyhow::Result<SessionKeys> {
    let path = airlock_proxy::audit::signing_key_file(config);
    if !path.exists() {
        bail!("no checkpoint key at {} (pass --key)", path.display());
    }
    Ok(SessionKeys::load_or_create(&path)?)
}

fn verify(
    config: &Config,
    key_files: &[PathBuf],
    checkpoints: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let keys = if key_files.is_empty() {
        vec![VerifierKey::of(&own_key(config)?)]
    } else {
        let mut keys = Vec::new();
        for file in key_files {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                keys.push(
                    VerifierKey::parse(line)
                        .with_context(|| format!("bad verifier key in {}", file.display()))?,
                );
            }
        }
        keys
    };
    let file = checkpoints.unwrap_or_else(|| airlock_proxy::audit::checkpoint_file(config));
    let mut external = Vec::new();
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let note = serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|v| v["note"].as_str().map(str::to_owned))
                    .with_context(|| {
                        format!("{}:{}: not a checkpoint line", file.display(), i + 1)
                    })?;
                external.push(note);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "note: no checkpoint file at {}; checking stored checkpoints only",
                file.display()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
    let reports = airlock_store::audit::verify(&mut open(config)?, &keys, &external)?;
    let mut bad = false;
    for r in &reports {
        match &r.problem {
            Some(p) => {
                bad = true;
                println!("FAILED {p}");
            }
            None => println!(
                "ok     chain {}: {} entries (to {}), {} checkpoint checks",
                r.chain, r.entries, r.last_seq, r.checkpoints_checked
            ),
        }
        if !r.interrupted.is_empty() {
            println!(
                "       {} request(s) forwarded whose response was never recorded (gateway stopped): {}",
                r.interrupted.len(),
                r.interrupted.join(", ")
            );
        }
        if !r.incomplete.is_empty() {
            println!(
                "       {} request(s) without a final entry yet (in flight, or the gateway has not restarted): {}",
                r.incomplete.len(),
                r.incomplete.join(", ")
            );
        }
    }
    if reports.is_empty() {
        println!("the store holds no audit entries");
    }
    Ok(if bad { 1 } else { 0 })
}

/// One line per entry: time, request, kind, who, model, decision, status.
fn line(r: &Row) -> String {
    let b: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    let d = &b["detail"];
    format!(
        "{}  {}  {:<11} {:<16} {:<24} {:<8} {:>3}  {}",
        format_ms(r.at_ms),
        r.request_id,
        r.kind,
        r.subject.as_deref().unwrap_or("-"),
        r.model.as_deref().unwrap_or("-"),
        r.decision.as_deref().unwrap_or("-"),
        r.status.map_or("-".to_owned(), |s| s.to_string()),
        d["reason"].as_str().unwrap_or(""),
    )
}

/// A request's entries, readably.
fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    let first: Value = serde_json::from_str(&rows[0].body).unwrap_or(Value::Null);
    let last: Value = serde_json::from_str(&rows[rows.len() - 1].body).unwrap_or(Value::Null);
    let (f, l) = (&first["detail"], &last["detail"]);
    let s = |v: &Value| v.as_str().map_or("-".to_owned(), str::to_owned);
    let n = |v: &Value| v.as_u64().map_or("-".to_owned(), |x| x.to_string());
    let ms =
        |v: &Value| v.as_u64().map_or("-".to_owned(), |us| format!("{:.1} ms", us as f64 / 1000.0));
    out.push_str(&format!("request   {}\n", rows[0].request_id));
    out.push_str(&format!("time      {}\n", format_ms(rows[0].at_ms)));
    out.push_str(&format!(
        "identity  {} (groups: {}) via {}, token {}\n",
        s(&first["subject"]),
        first["groups"].as_array().map_or(String::new(), |g| g
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", ")),
        s(&f["issuer"]),
        s(&f["token_id"])
    ));
    out.push_str(&format!("client    {}  {}\n", s(&f["client_addr"]), s(&f["user_agent"])));
    out.push_str(&format!(
        "call      {} {}  model {}  stream {}\n",
        s(&f["method"]),
        s(&f["route"]),
        s(&first["model"]),
        f["stream"]
    ));
    out.push_str(&format!("decision  {}\n", s(&first["decision"])));
    out.push_str(&format!(
        "outcome   {} ({}), status {}\n",
        s(&l["outcome"]),
        s(&l["reason"]),
        n(&last["status"])
    ));
    out.push_str(&format!(
        "upstream  status {}, request id {}, attempts {}\n",
        n(&l["upstream"]["status"]),
        s(&l["upstream"]["request_id"]),
        n(&l["upstream"]["attempts"])
    ));
    out.push_str(&format!(
        "usage     {} input / {} output tokens\n",
        n(&l["usage"]["input_tokens"]),
        n(&l["usage"]["output_tokens"])
    ));
    out.push_str(&format!(
        "timings   total {}, upstream {}, first byte {}\n",
        ms(&l["timings_us"]["total"]),
        ms(&l["timings_us"]["upstream"]),
        ms(&l["timings_us"]["first_byte"])
    ));
    out.push_str("entries\n");
    for r in rows {
        out.push_str(&format!(
            "  {} #{} {:<11} hash {}\n",
            r.chain,
            r.seq,
            r.kind,
            &r.hash[..16.min(r.hash.len())]
        ));
    }
    let p = &f["policy"];
    if let Some(version) = p["version"].as_str() {
        let rules: Vec<String> = p["rules"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|h| format!("{} ({}, {})", s(&h["id"]), s(&h["action"]), s(&h["mode"])))
                    .collect()
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "policy    {version}; rules: {}\n",
            if rules.is_empty() { "none".into() } else { rules.join(", ") }
        ));
    }
    let counted = |v: &Value| -> String {
        v.as_object()
            .map(|m| m.iter().map(|(k, n)| format!("{k}×{n}")).collect::<Vec<_>>().join(", "))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "none".into())
    };
    out.push_str(&format!(
        "redacted  {}; masked in response: {}\n",
        counted(&p["redactions"]),
        counted(&l["masked"])
    ));
    out.push_str(
        "conversation (values any detector finds are shown as [TYPE]; nothing raw is stored)\n",
    );
    match (&f["request_body"], &l["response_body"]) {
        (Value::Null, Value::Null) => {
            out.push_str("  not recorded (audit.max_body_bytes: 0, or no body)\n")
        }
        (req, resp) => {
            out.push_str(&conversation(req));
            if !resp.is_null() {
                out.push_str(&reply(resp));
            }
        }
    }
    out
}

/// The request as a transcript: system, then each turn with its blocks.
fn conversation(body: &Value) -> String {
    if let Some(cut) = cut_text("request", body) {
        return cut;
    }
    let mut out = String::new();
    match &body["system"] {
        Value::String(t) => out.push_str(&format!("  [system]     {}\n", indent(t))),
        Value::Array(blocks) => {
            for b in blocks {
                out.push_str(&format!(
                    "  [system]     {}\n",
                    indent(b["text"].as_str().unwrap_or(""))
                ));
            }
        }
        _ => {}
    }
    for m in body["messages"].as_array().into_iter().flatten() {
        let role = m["role"].as_str().unwrap_or("?");
        out.push_str(&blocks(role, &m["content"]));
    }
    out
}

/// A body stored cut at `audit.max_body_bytes` (kept as its first bytes of JSON text).
fn cut_text(what: &str, body: &Value) -> Option<String> {
    let text = body.get("text").filter(|_| body["airlock_truncated"] == true)?.as_str()?;
    Some(format!(
        "  ({what} cut at {} of {} bytes)\n  {}\n",
        text.len(),
        body["bytes"],
        indent(text)
    ))
}

fn reply(body: &Value) -> String {
    if let Some(cut) = cut_text("response", body) {
        return cut;
    }
    let mut out = blocks("assistant", &body["content"]);
    if body["airlock_truncated"] == true {
        out.push_str("  (response cut at audit.max_body_bytes)\n");
    }
    if let Some(stop) = body["stop_reason"].as_str() {
        out.push_str(&format!("  [stop]       {stop}\n"));
    }
    out
}

fn blocks(role: &str, content: &Value) -> String {
    let label = |kind: &str| {
        format!("[{role}{}]", if kind.is_empty() { String::new() } else { format!(" {kind}") })
    };
    let line = |kind: &str, text: &str| format!("  {:<12} {}\n", label(kind), indent(text));
    match content {
        Value::String(t) => line("", t),
        Value::Array(items) => items
            .iter()
            .map(|b| match b["type"].as_str().unwrap_or("") {
                "text" => line("", b["text"].as_str().unwrap_or("")),
                "thinking" => line("thinking", b["thinking"].as_str().unwrap_or("")),
                "tool_use" | "server_tool_use" => line(
                    "tool call",
                    &format!("{} {}", b["name"].as_str().unwrap_or("?"), b["input"]),
                ),
                "tool_result" => {
                    line("tool result", &airlock_wire::tool_result_text(&b["content"]))
                }
                other => line(other, ""),
            })
            .collect(),
        _ => String::new(),
    }
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n               ")
}

/// `2026-01-31`, `2026-01-31T12:00:00Z`, unix seconds, or an age (`90d`, `1h`) before now.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(s.parse()?);
    }
    if let Some(days) = s.strip_suffix('d').and_then(|d| d.parse::<i64>().ok()) {
        return Ok(now_s() - days * 86_400);
    }
    if let Ok(age) = airlock_config::parse_duration(s) {
        return Ok(now_s() - age.as_secs() as i64);
    }
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00Z"));
    let nums =
        |t: &str, sep: char| -> Option<Vec<i64>> { t.split(sep).map(|p| p.parse().ok()).collect() };
    let d = nums(date, '-')
        .filter(|d| d.len() == 3)
        .with_context(|| format!("`{s}` is not a date, time, unix seconds or age"))?;
    let t = nums(time.trim_end_matches('Z'), ':')
        .filter(|t| t.len() == 3 && time.ends_with('Z'))
        .with_context(|| format!("`{s}`: give times in UTC, like 2026-01-31T12:00:00Z"))?;
    if !(1..=12).contains(&d[1]) || !(1..=31).contains(&d[2]) || t[0] > 23 || t[1] > 59 || t[2] > 60
    {
        bail!("`{s}` is out of range");
    }
    Ok(days_from_civil(d[0], d[1], d[2]) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2])
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn format_ms(ms: i64) -> String {
    airlock_config::civil::rfc3339_ms(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01").unwrap(), 0);
        assert_eq!(parse_time("2026-11-25T10:30:00Z").unwrap(), 1_795_602_600);
        assert_eq!(format_ms(1_795_602_600_123), "2026-11-25T10:30:00.123Z");
        assert_eq!(parse_time("1795602600").unwrap(), 1_795_602_600);
        assert!(parse_time("2026-13-01").is_err());
        assert!(parse_time("2026-11-25T10:30:00").is_err());
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2d").unwrap() < now_s() - 86_400);
    }
}
