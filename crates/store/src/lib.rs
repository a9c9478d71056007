//! The store: audit entries, checkpoints and revocations, on SQLite (the embedded default) or
//! PostgreSQL (several instances). Both backends speak the same SQL ([`sql`]) through a small
//! driver seam ([`Sql`]), so every query is written once ([`Store`]).
//!
//! The store is synchronous: the audit writer ([`writer`]) runs on its own thread and commits
//! in groups; readers call it from blocking tasks.
//!
//! Invariant: migrations are versioned and applied on open, once, under a lock.
//! Invariant: one writer per chain: a file lock (SQLite) or an advisory lock (PostgreSQL) is
//! held for as long as a gateway writes its chain.

pub mod audit;
mod pg;
pub mod sched;
pub mod sql;
mod sqlite;
pub mod writer;

use airlock_audit::{Index, Row, Sealed};
use airlock_config::StoreUrl;

pub use writer::{WriteError, Writer, WriterOptions};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Db(String),
    #[error("store: {0}")]
    Setup(String),
    #[error("store: chain {0} is being written by another gateway")]
    ChainBusy(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Db(e.to_string())
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        StoreError::Db(e.to_string())
    }
}

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
    NullText,
    NullInt,
}

impl Param {
    fn text(v: Option<&str>) -> Param {
        v.map_or(Param::NullText, |s| Param::Text(s.to_owned()))
    }
}

/// A column value read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl Value {
    fn int(&self) -> Result<i64, StoreError> {
        match self {
            Value::Int(i) => Ok(*i),
            other => Err(StoreError::Db(format!("expected an integer column, found {other:?}"))),
        }
    }
    fn opt_int(&self) -> Result<Option<i64>, StoreError> {
        match self {
            Value::Null => Ok(None),
            v => v.int().map(Some),
        }
    }
    fn text(&self) -> Result<String, StoreError> {
        match self {
            Value::Text(s) => Ok(s.clone()),
            other => Err(StoreError::Db(format!("expected a text column, found {other:?}"))),
        }
    }
    fn opt_text(&self) -> Result<Option<String>, StoreError> {
        match self {
            Value::Null => Ok(None),
            v => v.text().map(Some),
        }
    }
}

/// The driver seam: what each backend implements.
pub trait Sql: Send {
    fn exec(&mut self, sql: &str, params: &[Param]) -> Result<u64, StoreError>;
    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Value>>, StoreError>;
    /// Several statements, no parameters (migrations).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
    /// Start a write transaction (SQLite takes the write lock at once).
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Serialise migrations between processes (PostgreSQL: a transaction advisory lock).
    fn migration_lock(&mut self) -> Result<(), StoreError>;
    /// Claim the right to write `chain` for as long as this connection lives.
    fn lock_chain(&mut self, chain: &str) -> Result<(), StoreError>;
    /// SQLite: stop checkpointing the WAL inside this connection's commits, except as a
    /// backstop (the caller runs a checkpoint thread on a connection of its own). False where there is
    /// nothing to hand off.
    fn hand_off_checkpoints(&mut self) -> bool {
        false
    }
    /// After `hand_off_checkpoints`: the WAL's size in pages after this thread's last commit.
    fn wal_pages(&self) -> Option<i32> {
        None
    }
}

/// A search over audit entries. Every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub subject: Option<String>,
    pub group: Option<String>,
    pub rule: Option<String>,
    pub decision: Option<String>,
    pub model: Option<String>,
    pub request_id: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: u64,
}

/// One stored revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// `token` or `subject`.
    pub kind: String,
    pub value: String,
    /// Subject revocations: tokens issued at or before this second are refused.
    pub at_s: u64,
    /// Kept until this second (after it, no token it names can still be valid).
    pub until_s: u64,
}

/// A request held for a reviewer (the stored body is handed out only by
/// [`Store::claim_approved_body`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub id: String,
    pub request_id: String,
    pub created_ms: i64,
    /// A pending approval not decided by then expires.
    pub expires_ms: i64,
    pub subject: String,
    pub groups: Vec<String>,
    pub rule: String,
    /// Groups whose members may decide.
    pub approvers: Vec<String>,
    pub model: Option<String>,
    pub stream: bool,
    /// `wait` or `ticket`.
    pub mode: String,
    /// SHA-256 (hex) of the exact upstream body.
    pub body_hash: String,
    /// The request as reviewers see it: JSON, every detected value masked.
    pub view: String,
    /// `pending`, `approved`, `denied`, `expired`, `abandoned`, `forwarding`, `forwarded`.
    pub state: String,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    pub decided_ms: Option<i64>,
    /// The gateway instance holding the client's call.
    pub instance: String,
}

/// A standing grant: `subject`'s requests held by `rule` pass without review until
/// `until_ms`, unless revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub subject: String,
    pub rule: String,
    /// The approver groups of the approval it came from (who may see and revoke it).
    pub approvers: Vec<String>,
    pub approval_id: String,
    pub granted_by: String,
    pub created_ms: i64,
    pub until_ms: i64,
    pub revoked_by: Option<String>,
    pub revoked_ms: Option<i64>,
}

/// A connection to the store, with every query the gateway and the CLI use.
pub struct Store {
    sql: Box<dyn Sql>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Wall-clock milliseconds since the epoch (entry and checkpoint times; never used for order).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Connect and apply pending migrations.
    pub fn open(url: &StoreUrl) -> Result<Store, StoreError> {
        let sql: Box<dyn Sql> = match url {
            StoreUrl::Sqlite(path) => Box::new(sqlite::connect(path)?),
            StoreUrl::Postgres(url) => Box::new(pg::connect(url)?),
        };
        let mut store = Store { sql };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        self.sql.batch(sql::SCHEMA_TABLE)?;
        self.transaction(|s| {
            s.sql.migration_lock()?;
            let applied: Vec<i64> = s
                .sql
                .query(sql::SCHEMA_VERSIONS, &[])?
                .iter()
                .map(|r| r[0].int())
                .collect::<Result<_, _>>()?;
            for (version, script) in sql::MIGRATIONS {
                if !applied.contains(version) {
                    tracing::info!(target: "airlock::store", version, "applying migration");
                    s.sql.batch(script)?;
                    s.sql
                        .exec(sql::SCHEMA_RECORD, &[Param::Int(*version), Param::Int(now_ms())])?;
                }
            }
            Ok(())
        })
    }

    fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.sql.begin()?;
        match f(self) {
            Ok(v) => {
                self.sql.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.sql.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    pub fn lock_chain(&mut self, chain: &str) -> Result<(), StoreError> {
        self.sql.lock_chain(chain)
    }

    /// See [`Sql::hand_off_checkpoints`].
    pub fn hand_off_checkpoints(&mut self) -> bool {
        self.sql.hand_off_checkpoints()
    }

    /// See [`Sql::wal_pages`].
    pub fn wal_pages(&self) -> Option<i32> {
        self.sql.wal_pages()
    }

    /// Write sealed entries in one transaction: all or none.
    pub fn append(&mut self, entries: &[Sealed]) -> Result<(), StoreError> {
        self.transaction(|s| {
            for sealed in entries {
                let e = &sealed.entry;
                let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_default();
                s.sql.exec(
                    sql::INSERT_ENTRY,
                    &[
                        Param::Text(e.chain.clone()),
                        Param::Int(e.seq as i64),
                        Param::Text(e.kind.as_str().to_owned()),
                        Param::Text(e.request_id.clone()),
                        Param::Int(e.at_ms),
                        Param::text(e.index.subject.as_deref()),
                        Param::Text(json(&e.index.groups)),
                        Param::text(e.index.model.as_deref()),
                        Param::text(e.index.decision.as_deref()),
                        Param::Text(json(&e.index.rules)),
                        e.index.status.map_or(Param::NullInt, |s| Param::Int(i64::from(s))),
                        Param::Text(sealed.body.clone()),
                        Param::Text(sealed.prev_hash.clone()),
                        Param::Text(sealed.hash.clone()),
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// The chain's last entry: its sequence number and hash.
    pub fn head(&mut self, chain: &str) -> Result<Option<(u64, String)>, StoreError> {
        let rows = self.sql.query(sql::HEAD, &[Param::Text(chain.to_owned())])?;
        rows.first().map(|r| Ok((r[0].int()? as u64, r[1].text()?))).transpose()
    }

    /// Requests of `chain` forwarded without their response recorded.
    pub fn unfinished(&mut self, chain: &str) -> Result<Vec<(String, Index)>, StoreError> {
        let rows = self.sql.query(sql::UNFINISHED, &[Param::Text(chain.to_owned())])?;
        rows.iter()
            .map(|r| {
                let list = |v: &Value| -> Result<Vec<String>, StoreError> {
                    Ok(serde_json::from_str(&v.text()?).unwrap_or_default())
                };
                Ok((
                    r[0].text()?,
                    Index {
                        subject: r[1].opt_text()?,
                        groups: list(&r[2])?,
                        model: r[3].opt_text()?,
                        decision: r[4].opt_text()?,
                        rules: list(&r[5])?,
                        status: None,
                    },
                ))
            })
            .collect()
    }

    pub fn add_checkpoint(
        &mut self,
        chain: &str,
        n: u64,
        size: u64,
        note: &str,
    ) -> Result<(), StoreError> {
        self.sql.exec(
            sql::INSERT_CHECKPOINT,
            &[
                Param::Text(chain.to_owned()),
                Param::Int(n as i64),
                Param::Int(size as i64),
                Param::Int(now_ms()),
                Param::Text(note.to_owned()),
            ],
        )?;
        Ok(())
    }

    /// The chain's latest checkpoint: its number and note.
    pub fn last_checkpoint(&mut self, chain: &str) -> Result<Option<(u64, String)>, StoreError> {
        let rows = self.sql.query(sql::LAST_CHECKPOINT, &[Param::Text(chain.to_owned())])?;
        rows.first().map(|r| Ok((r[0].int()? as u64, r[1].text()?))).transpose()
    }

    /// Every checkpoint note of the chain, oldest first.
    pub fn checkpoints(&mut self, chain: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.sql.query(sql::CHECKPOINTS, &[Param::Text(chain.to_owned())])?;
        rows.iter().map(|r| r[0].text()).collect()
    }

    pub fn chains(&mut self) -> Result<Vec<String>, StoreError> {
        let rows = self.sql.query(sql::CHAINS, &[])?;
        rows.iter().map(|r| r[0].text()).collect()
    }

    /// Entries of `chain` after sequence number `after`, in order, at most `limit`.
    pub fn entries(&mut self, chain: &str, after: u64, limit: u64) -> Result<Vec<Row>, StoreError> {
        let sql = format!(
            "SELECT {} FROM audit_entries WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            sql::ENTRY_COLUMNS
        );
        let params =
            [Param::Text(chain.to_owned()), Param::Int(after as i64), Param::Int(limit as i64)];
        self.sql.query(&sql, &params)?.iter().map(|r| row(r)).collect()
    }

    /// Entries matching `q`, newest first.
    pub fn search(&mut self, q: &Query) -> Result<Vec<Row>, StoreError> {
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        let mut add = |clause: &str, p: Param| {
            params.push(p);
            clauses.push(clause.replace('?', &format!("${}", params.len())));
        };
        let text = |s: &String| Param::Text(s.clone());
        if let Some(v) = &q.subject {
            add("subject = ?", text(v));
        }
        if let Some(v) = &q.group {
            add("groups_json LIKE ? ESCAPE '!'", Param::Text(sql::contains_element(v)));
        }
        if let Some(v) = &q.rule {
            add("rules_json LIKE ? ESCAPE '!'", Param::Text(sql::contains_element(v)));
        }
        if let Some(v) = &q.decision {
            add("decision = ?", text(v));
        }
        if let Some(v) = &q.model {
            add("model = ?", text(v));
        }
        if let Some(v) = &q.request_id {
            add("request_id = ?", text(v));
        }
        if let Some(v) = q.since_ms {
            add("at_ms >= ?", Param::Int(v));
        }
        if let Some(v) = q.until_ms {
            add("at_ms < ?", Param::Int(v));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        params.push(Param::Int(q.limit.min(100_000) as i64));
        let sql = format!(
            "SELECT {} FROM audit_entries {filter} ORDER BY at_ms DESC, chain, seq DESC LIMIT ${}",
            sql::ENTRY_COLUMNS,
            params.len()
        );
        self.sql.query(&sql, &params)?.iter().map(|r| row(r)).collect()
    }

    /// The signed checkpoint a pruned chain now starts at.
    pub fn anchor(&mut self, chain: &str) -> Result<Option<String>, StoreError> {
        let rows = self.sql.query(sql::ANCHOR, &[Param::Text(chain.to_owned())])?;
        rows.first().map(|r| r[0].text()).transpose()
    }

    /// Delete entries 1..=`upto` of `chain`, leaving `anchor_note` (a signed checkpoint at
    /// size `upto`) as the chain's new starting point. Returns how many entries went.
    pub fn prune(&mut self, chain: &str, upto: u64, anchor_note: &str) -> Result<u64, StoreError> {
        self.transaction(|s| {
            let c = Param::Text(chain.to_owned());
            s.sql.exec(sql::DELETE_ANCHOR, std::slice::from_ref(&c))?;
            s.sql.exec(sql::INSERT_ANCHOR, &[c.clone(), Param::Text(anchor_note.to_owned())])?;
            s.sql.exec(sql::PRUNE, &[c, Param::Int(upto as i64)])
        })
    }

    /// Store a revocation; entries past their horizon are deleted in the same transaction
    /// (here, on the rare write, so the frequent reads stay read-only).
    pub fn revoke(&mut self, r: &Revocation) -> Result<(), StoreError> {
        let now = Param::Int(r.at_s as i64);
        self.transaction(|s| {
            s.sql.exec(sql::FORGET_REVOCATIONS, std::slice::from_ref(&now))?;
            s.sql.exec(
                sql::REVOKE,
                &[
                    Param::Text(r.kind.clone()),
                    Param::Text(r.value.clone()),
                    Param::Int(r.at_s as i64),
                    Param::Int(r.until_s as i64),
                ],
            )?;
            Ok(())
        })
    }

    /// Revocations still in force at `now_s`.
    pub fn revocations(&mut self, now_s: u64) -> Result<Vec<Revocation>, StoreError> {
        let rows = self.sql.query(sql::REVOCATIONS, &[Param::Int(now_s as i64)])?;
        rows.iter()
            .map(|r| {
                Ok(Revocation {
                    kind: r[0].text()?,
                    value: r[1].text()?,
                    at_s: r[2].int()? as u64,
                    until_s: r[3].int()? as u64,
                })
            })
            .collect()
    }

    /// Store a held request, with the exact body that would be forwarded when it will be
    /// forwarded from storage (wait mode; a ticket's request brings its body again).
    pub fn hold(&mut self, a: &Approval, body: Option<&str>) -> Result<(), StoreError> {
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_default();
        self.sql.exec(
            sql::INSERT_APPROVAL,
            &[
                Param::Text(a.id.clone()),
                Param::Text(a.request_id.clone()),
                Param::Int(a.created_ms),
                Param::Int(a.expires_ms),
                Param::Text(a.subject.clone()),
                Param::Text(json(&a.groups)),
                Param::Text(a.rule.clone()),
                Param::Text(json(&a.approvers)),
                Param::text(a.model.as_deref()),
                Param::Int(i64::from(a.stream)),
                Param::Text(a.mode.clone()),
                Param::Text(a.body_hash.clone()),
                Param::Text(a.view.clone()),
                Param::Text(a.state.clone()),
                Param::text(a.decided_by.as_deref()),
                Param::text(a.reason.as_deref()),
                a.decided_ms.map_or(Param::NullInt, Param::Int),
                Param::Text(a.instance.clone()),
                Param::text(body),
            ],
        )?;
        Ok(())
    }

    pub fn approval(&mut self, id: &str) -> Result<Option<Approval>, StoreError> {
        let sql = format!("SELECT {} FROM approvals WHERE id = $1", sql::APPROVAL_COLUMNS);
        let rows = self.sql.query(&sql, &[Param::Text(id.to_owned())])?;
        rows.first().map(|r| approval(r)).transpose()
    }

    /// Approvals in `state` (every state when `None`), newest first, at most `limit`.
    pub fn approvals(
        &mut self,
        state: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Approval>, StoreError> {
        let sql = format!(
            "SELECT {} FROM approvals WHERE ($1 = '' OR state = $1) ORDER BY created_ms DESC LIMIT $2",
            sql::APPROVAL_COLUMNS
        );
        let params = [Param::Text(state.unwrap_or("").to_owned()), Param::Int(limit as i64)];
        self.sql.query(&sql, &params)?.iter().map(|r| approval(r)).collect()
    }

    /// How many approvals are in `state`.
    pub fn count_approvals(&mut self, state: &str) -> Result<u64, StoreError> {
        let rows = self.sql.query(
            "SELECT COUNT(*) FROM approvals WHERE state = $1",
            &[Param::Text(state.to_owned())],
        )?;
        Ok(rows.first().map(|r| r[0].int()).transpose()?.unwrap_or(0) as u64)
    }

    /// Approve or deny a pending approval before it expires. `false`: it was not pending (or
    /// had expired) — someone else decided first, and nothing changed.
    pub fn decide(
        &mut self,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let state = if approve { "approved" } else { "denied" };
        let n = self.sql.exec(
            sql::DECIDE_APPROVAL,
            &[
                Param::Text(state.to_owned()),
                Param::Text(by.to_owned()),
                Param::text(reason),
                Param::Int(now_ms),
                Param::Text(id.to_owned()),
            ],
        )?;
        Ok(n == 1)
    }

    /// Move an approval from state `from` to the final state `to` (`expired`, `abandoned`,
    /// `forwarded`), forgetting its body. `false`: it was not in `from`.
    pub fn finish_approval(
        &mut self,
        id: &str,
        from: &str,
        to: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let params = [
            Param::Text(to.to_owned()),
            Param::Int(now_ms),
            Param::Text(id.to_owned()),
            Param::Text(from.to_owned()),
        ];
        Ok(self.sql.exec(sql::FINISH_APPROVAL, &params)? == 1)
    }

    /// Expire every pending approval past its deadline (whoever holds it) and every approved
    /// ticket past its window, and abandon approved holds nobody claimed within
    /// `claim_window_ms` of the decision (their gateway is gone); how many changed.
    pub fn expire_approvals(
        &mut self,
        now_ms: i64,
        claim_window_ms: i64,
    ) -> Result<u64, StoreError> {
        let now = Param::Int(now_ms);
        self.transaction(|s| {
            Ok(s.sql.exec(sql::EXPIRE_APPROVALS, std::slice::from_ref(&now))?
                + s.sql.exec(sql::EXPIRE_TICKETS, std::slice::from_ref(&now))?
                + s.sql.exec(sql::ABANDON_UNCLAIMED, &[Param::Int(now_ms - claim_window_ms)])?)
        })
    }

    /// At start: the holds `instance` had before it stopped are abandoned (never sent).
    pub fn abandon_instance(&mut self, instance: &str, now_ms: i64) -> Result<u64, StoreError> {
        self.sql
            .exec(sql::ABANDON_INSTANCE, &[Param::Int(now_ms), Param::Text(instance.to_owned())])
    }

    /// The body of an approved request, handed out once: the approval moves to `forwarded`
    /// and the body is forgotten in the same transaction. `None`: not approved (or already
    /// claimed).
    pub fn claim_approved_body(
        &mut self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let id = Param::Text(id.to_owned());
        self.transaction(|s| {
            if s.sql.exec(sql::CLAIM_APPROVAL, std::slice::from_ref(&id))? != 1 {
                return Ok(None);
            }
            let rows = s.sql.query(sql::APPROVAL_BODY, std::slice::from_ref(&id))?;
            let body = rows.first().map(|r| r[0].opt_text()).transpose()?.flatten();
            let params = [
                Param::Text("forwarded".into()),
                Param::Int(now_ms),
                id.clone(),
                Param::Text("forwarding".into()),
            ];
            s.sql.exec(sql::FINISH_APPROVAL, &params)?;
            Ok(body)
        })
    }

    /// A ticket-mode approval of `subject` for this exact body under `rule`: pending, or
    /// approved and still inside its window. Returns its id and state.
    pub fn find_ticket(
        &mut self,
        subject: &str,
        body_hash: &str,
        rule: &str,
        now_ms: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        let params = [
            Param::Text(subject.to_owned()),
            Param::Text(body_hash.to_owned()),
            Param::Text(rule.to_owned()),
            Param::Int(now_ms),
        ];
        let rows = self.sql.query(sql::FIND_TICKET, &params)?;
        rows.first().map(|r| Ok((r[0].text()?, r[1].text()?))).transpose()
    }

    pub fn add_grant(&mut self, g: &Grant) -> Result<(), StoreError> {
        self.sql.exec(
            sql::INSERT_GRANT,
            &[
                Param::Text(g.id.clone()),
                Param::Text(g.subject.clone()),
                Param::Text(g.rule.clone()),
                Param::Text(serde_json::to_string(&g.approvers).unwrap_or_default()),
                Param::Text(g.approval_id.clone()),
                Param::Text(g.granted_by.clone()),
                Param::Int(g.created_ms),
                Param::Int(g.until_ms),
            ],
        )?;
        Ok(())
    }

    /// The id of a grant letting `subject` pass `rule` at `now_ms`.
    pub fn active_grant(
        &mut self,
        subject: &str,
        rule: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let params =
            [Param::Text(subject.to_owned()), Param::Text(rule.to_owned()), Param::Int(now_ms)];
        let rows = self.sql.query(sql::ACTIVE_GRANT, &params)?;
        rows.first().map(|r| r[0].text()).transpose()
    }

    /// Grants still in force at `now_ms` (all, revoked and expired too, when `all`), newest
    /// first, at most 1000.
    pub fn grants(&mut self, now_ms: i64, all: bool) -> Result<Vec<Grant>, StoreError> {
        let sql = format!(
            "SELECT {} FROM approval_grants WHERE $1 = 1 OR (until_ms > $2 AND revoked_ms IS NULL) \
             ORDER BY created_ms DESC LIMIT 1000",
            sql::GRANT_COLUMNS
        );
        let rows = self.sql.query(&sql, &[Param::Int(i64::from(all)), Param::Int(now_ms)])?;
        rows.iter().map(|r| grant(r)).collect()
    }

    pub fn grant(&mut self, id: &str) -> Result<Option<Grant>, StoreError> {
        let sql = format!("SELECT {} FROM approval_grants WHERE id = $1", sql::GRANT_COLUMNS);
        let rows = self.sql.query(&sql, &[Param::Text(id.to_owned())])?;
        rows.first().map(|r| grant(r)).transpose()
    }

    /// Revoke a grant; `false` if there is none by that id still unrevoked.
    pub fn revoke_grant(&mut self, id: &str, by: &str, now_ms: i64) -> Result<bool, StoreError> {
        let params = [Param::Text(by.to_owned()), Param::Int(now_ms), Param::Text(id.to_owned())];
        Ok(self.sql.exec(sql::REVOKE_GRANT, &params)? == 1)
    }

    /// Direct access for tests that tamper with the store.
    pub fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, StoreError> {
        self.sql.exec(sql, params)
    }
}

fn grant(r: &[Value]) -> Result<Grant, StoreError> {
    Ok(Grant {
        id: r[0].text()?,
        subject: r[1].text()?,
        rule: r[2].text()?,
        approvers: serde_json::from_str(&r[3].text()?).unwrap_or_default(),
        approval_id: r[4].text()?,
        granted_by: r[5].text()?,
        created_ms: r[6].int()?,
        until_ms: r[7].int()?,
        revoked_by: r[8].opt_text()?,
        revoked_ms: r[9].opt_int()?,
    })
}

fn approval(r: &[Value]) -> Result<Approval, StoreError> {
    let list = |v: &Value| -> Result<Vec<String>, StoreError> {
        Ok(serde_json::from_str(&v.text()?).unwrap_or_default())
    };
    Ok(Approval {
        id: r[0].text()?,
        request_id: r[1].text()?,
        created_ms: r[2].int()?,
        expires_ms: r[3].int()?,
        subject: r[4].text()?,
        groups: list(&r[5])?,
        rule: r[6].text()?,
        approvers: list(&r[7])?,
        model: r[8].opt_text()?,
        stream: r[9].int()? != 0,
        mode: r[10].text()?,
        body_hash: r[11].text()?,
        view: r[12].text()?,
        state: r[13].text()?,
        decided_by: r[14].opt_text()?,
        reason: r[15].opt_text()?,
        decided_ms: r[16].opt_int()?,
        instance: r[17].text()?,
    })
}

fn row(r: &[Value]) -> Result<Row, StoreError> {
    Ok(Row {
        chain: r[0].text()?,
        seq: r[1].int()? as u64,
        kind: r[2].text()?,
        request_id: r[3].text()?,
        at_ms: r[4].int()?,
        subject: r[5].opt_text()?,
        groups: r[6].text()?,
        model: r[7].opt_text()?,
        decision: r[8].opt_text()?,
        rules: r[9].text()?,
        status: r[10].opt_int()?,
        body: r[11].text()?,
        prev_hash: r[12].text()?,
        hash: r[13].text()?,
    })
}
