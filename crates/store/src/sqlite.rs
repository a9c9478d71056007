//! SQLite: one file, WAL journal, `synchronous=FULL` (a commit survives power loss when the
//! disk honours fsync). Both settings are asserted at open; the gateway refuses to start
//! without them.
//!
//! WAL checkpoints (copying committed pages from the WAL into the database file, then
//! fsyncing it) normally run inside the commit that takes the WAL past 1,000 pages, and
//! whoever waits on that commit waits for the checkpoint too. The audit writer hands them to
//! a thread of its own instead (`Sql::hand_off_checkpoints`, [`Checkpoints`]); its own
//! connection checkpoints only as a backstop, at [`BACKSTOP_PAGES`].

use crate::{Param, Sql, StoreError, Value};
use rusqlite::types::{ToSqlOutput, ValueRef};
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// WAL growth (pages) after which the checkpoint thread is asked to run: SQLite's own
/// autocheckpoint threshold.
pub const CHECKPOINT_PAGES: i32 = 1000;

/// WAL size (pages, 32 MiB at 4 KiB) at which a connection that handed its checkpoints off
/// checkpoints after a commit itself: the checkpoint thread fell behind, failed, or never
/// found the WAL without a newer commit (it can only be restarted from the beginning once
/// every frame in it is checkpointed). Nothing else writes meanwhile, so this one copies
/// whatever the thread left and the next transaction starts the WAL over: it never grows
/// much past this.
pub const BACKSTOP_PAGES: i32 = 8192;

thread_local! {
    /// The WAL's size in pages after this thread's last commit on a connection that handed
    /// its checkpoints off (set by [`after_commit`]; the audit writer is one thread).
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

/// The WAL hook of a connection that handed its checkpoints off.
fn after_commit(wal: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    if pages >= BACKSTOP_PAGES {
        // As SQLite's own autocheckpoint: the commit stands whatever this returns.
        if let Err(e) = wal.checkpoint_v2(rusqlite::hooks::CheckpointMode::PASSIVE) {
            tracing::warn!(target: "airlock::store", error = %e, pages, "WAL backstop checkpoint failed");
        }
    }
    Ok(())
}

pub struct Sqlite {
    conn: rusqlite::Connection,
    path: PathBuf,
    /// Held while this connection writes a chain.
    chain_lock: Option<std::fs::File>,
}

pub fn connect(path: &Path) -> Result<Sqlite, StoreError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Setup(format!("{what} {}: {e}", path.display()))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| setup("cannot create the directory of", &e))?;
    }
    create_private(path).map_err(|e| setup("cannot create", &e))?;
    let conn = rusqlite::Connection::open(path).map_err(|e| setup("cannot open", &e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA synchronous=FULL")?;
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") || sync != 2 {
        return Err(StoreError::Setup(format!(
            "{}: journal_mode={mode}, synchronous={sync}; WAL with synchronous=FULL is required",
            path.display()
        )));
    }
    Ok(Sqlite { conn, path: path.to_owned(), chain_lock: None })
}

/// A connection that only checkpoints the WAL, for the checkpoint thread.
pub struct Checkpoints(Sqlite);

impl Checkpoints {
    pub fn open(path: &Path) -> Result<Checkpoints, StoreError> {
        connect(path).map(Checkpoints)
    }

    /// Copy what the WAL holds into the database, without waiting for (or blocking) the
    /// writer or readers: (frames in the WAL, frames now checkpointed).
    pub fn passive(&self) -> Result<(i64, i64), StoreError> {
        let (_busy, log, done): (i64, i64, i64) =
            self.0.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        Ok((log, done))
    }
}

/// The database holds the audit log: owner-only from the first byte.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Param::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Param::NullText | Param::NullInt => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

impl Sql for Sqlite {
    fn exec(&mut self, sql: &str, params: &[Param]) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Value>>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(i) => Value::Int(i),
                    ValueRef::Real(f) => Value::Int(f as i64),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Value::Text(String::from_utf8_lossy(t).into_owned())
                    }
                });
            }
            out.push(values);
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        self.batch("BEGIN IMMEDIATE")
    }

    fn hand_off_checkpoints(&mut self) -> bool {
        // The hook replaces SQLite's autocheckpoint (which is itself a WAL hook).
        self.conn.wal_hook(Some(after_commit));
        true
    }

    fn wal_pages(&self) -> Option<i32> {
        Some(WAL_PAGES.get())
    }

    fn migration_lock(&mut self) -> Result<(), StoreError> {
        // BEGIN IMMEDIATE already holds the database's write lock.
        Ok(())
    }

    fn lock_chain(&mut self, chain: &str) -> Result<(), StoreError> {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{chain}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&name)
            .map_err(|e| StoreError::Setup(format!("cannot open the chain lock: {e}")))?;
        match file.try_lock() {
            Ok(()) => {
                self.chain_lock = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::ChainBusy(chain.to_owned())),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(StoreError::Setup(format!("cannot lock the chain: {e}")))
            }
        }
    }
}
