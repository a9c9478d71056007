//! PostgreSQL: for several gateway instances sharing one store. Each instance writes its own
//! chain under a session advisory lock. `synchronous_commit` must not be `off` and `fsync`
//! must be on; both are asserted at connect.
//!
//! Connections are plain TCP or a Unix socket (no TLS yet): run the store on a trusted
//! network or the same host.

use crate::{Param, Sql, StoreError, Value};
use postgres::types::{ToSql, Type};

pub struct Pg {
    client: postgres::Client,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").finish_non_exhaustive()
    }
}

pub fn connect(url: &str) -> Result<Pg, StoreError> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| StoreError::Setup(format!("cannot connect to PostgreSQL: {e}")))?;
    let show = |client: &mut postgres::Client, what: &str| -> Result<String, StoreError> {
        Ok(client.query_one(&format!("SHOW {what}"), &[])?.get::<_, String>(0))
    };
    let commit = show(&mut client, "synchronous_commit")?;
    let fsync = show(&mut client, "fsync")?;
    if commit == "off" || fsync != "on" {
        return Err(StoreError::Setup(format!(
            "PostgreSQL has synchronous_commit={commit}, fsync={fsync}; commits must be durable"
        )));
    }
    Ok(Pg { client })
}

fn bind(params: &[Param]) -> Vec<Box<dyn ToSql + Sync>> {
    params
        .iter()
        .map(|p| -> Box<dyn ToSql + Sync> {
            match p {
                Param::Text(s) => Box::new(s.clone()),
                Param::Int(i) => Box::new(*i),
                Param::NullText => Box::new(None::<String>),
                Param::NullInt => Box::new(None::<i64>),
            }
        })
        .collect()
}

impl Sql for Pg {
    fn exec(&mut self, sql: &str, params: &[Param]) -> Result<u64, StoreError> {
        let bound = bind(params);
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b.as_ref()).collect();
        Ok(self.client.execute(sql, &refs)?)
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Value>>, StoreError> {
        let bound = bind(params);
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b.as_ref()).collect();
        let rows = self.client.query(sql, &refs)?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        let ty = r.columns()[i].type_();
                        Ok(if *ty == Type::INT8 {
                            r.try_get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int)
                        } else if *ty == Type::INT4 {
                            r.try_get::<_, Option<i32>>(i)?
                                .map_or(Value::Null, |v| Value::Int(i64::from(v)))
                        } else if *ty == Type::BOOL {
                            r.try_get::<_, Option<bool>>(i)?
                                .map_or(Value::Null, |v| Value::Int(i64::from(v)))
                        } else {
                            r.try_get::<_, Option<String>>(i)?.map_or(Value::Null, Value::Text)
                        })
                    })
                    .collect()
            })
            .collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.client.batch_execute(sql)?)
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        self.batch("BEGIN")
    }

    fn migration_lock(&mut self) -> Result<(), StoreError> {
        self.exec("SELECT pg_advisory_xact_lock(7243000001)", &[]).map(|_| ())
    }

    fn lock_chain(&mut self, chain: &str) -> Result<(), StoreError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, chain.as_bytes());
        let mut key = [0u8; 8];
        key.copy_from_slice(&digest.as_ref()[..8]);
        let rows =
            self.query("SELECT pg_try_advisory_lock($1)", &[Param::Int(i64::from_be_bytes(key))])?;
        match rows.first().and_then(|r| r.first()) {
            Some(Value::Int(1)) => Ok(()),
            _ => Err(StoreError::ChainBusy(chain.to_owned())),
        }
    }
}
