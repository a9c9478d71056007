//! A small Redis client for the shared limit counters: RESP2 over TCP, a few pooled
//! connections, `EVALSHA` with an `EVAL` fallback, every call bounded in time and every
//! reply bounded in size. Only what the limiter needs — no pub/sub, no cluster, no TLS
//! (`rediss://` is refused at start: keep Redis on a private network or loopback).

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A reply. Errors from Redis (`-ERR ...`) are [`RedisError::Server`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    Int(i64),
    Bulk(Vec<u8>),
    Status(String),
    Array(Vec<Reply>),
}

impl Reply {
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: {0}")]
    Io(#[from] std::io::Error),
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Server(String),
    #[error("redis: malformed reply")]
    Protocol,
    #[error("redis: bad URL: {0}")]
    Url(String),
}

const MAX_BULK: usize = 1 << 20;
const MAX_ARRAY: usize = 4096;
const MAX_DEPTH: usize = 4;
const POOL: usize = 16;

type Conn = BufReader<TcpStream>;

#[derive(Debug)]
pub struct Redis {
    addr: String,
    password: Option<(Option<String>, String)>,
    db: u32,
    timeout: Duration,
    pool: std::sync::Mutex<Vec<Conn>>,
}

/// A Lua script, sent by its SHA-1 (and in full when Redis does not have it yet).
#[derive(Debug)]
pub struct Script {
    text: &'static str,
    sha: String,
}

impl Script {
    pub fn new(text: &'static str) -> Script {
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
        Script { text, sha: d.as_ref().iter().map(|b| format!("{b:02x}")).collect() }
    }
}

impl Redis {
    /// `redis://[[user]:password@]host[:port][/db]`.
    pub fn new(url: &str, timeout: Duration) -> Result<Redis, RedisError> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| RedisError::Url("only redis:// (no TLS) is supported".into()))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (host, db) = match rest.split_once('/') {
            Some((h, d)) if !d.is_empty() => {
                (h, d.parse::<u32>().map_err(|_| RedisError::Url("bad database number".into()))?)
            }
            Some((h, _)) => (h, 0),
            None => (rest, 0),
        };
        if host.is_empty() {
            return Err(RedisError::Url("no host".into()));
        }
        let addr = if host.contains(':') { host.to_owned() } else { format!("{host}:6379") };
        let password = auth.map(|a| match a.split_once(':') {
            Some((u, p)) => ((!u.is_empty()).then(|| u.to_owned()), p.to_owned()),
            None => (None, a.to_owned()),
        });
        Ok(Redis { addr, password, db, timeout, pool: std::sync::Mutex::new(Vec::new()) })
    }

    /// One command; the connection goes back to the pool only after a clean exchange.
    pub async fn call(&self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let work = async {
            let mut conn = match pooled {
                Some(c) => c,
                None => self.connect().await?,
            };
            let reply = exchange(&mut conn, args).await;
            if matches!(reply, Ok(_) | Err(RedisError::Server(_))) {
                let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
                if pool.len() < POOL {
                    pool.push(conn);
                }
            }
            reply
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| RedisError::Timeout(self.timeout))?
    }

    /// Run `script` (EVALSHA, loading it with EVAL the first time a server lacks it).
    pub async fn eval(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Reply, RedisError> {
        let n = keys.len().to_string();
        let rest: Vec<&[u8]> = keys.iter().chain(args).map(|s| s.as_bytes()).collect::<Vec<_>>();
        let mut cmd: Vec<&[u8]> = vec![b"EVALSHA", script.sha.as_bytes(), n.as_bytes()];
        cmd.extend_from_slice(&rest);
        match self.call(&cmd).await {
            Err(RedisError::Server(e)) if e.starts_with("NOSCRIPT") => {
                cmd[0] = b"EVAL";
                cmd[1] = script.text.as_bytes();
                self.call(&cmd).await
            }
            other => other,
        }
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        let stream = TcpStream::connect(&self.addr).await?;
        let _ = stream.set_nodelay(true);
        let mut conn = BufReader::new(stream);
        if let Some((user, password)) = &self.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(u) = user {
                auth.push(u.as_bytes());
            }
            auth.push(password.as_bytes());
            exchange(&mut conn, &auth).await?;
        }
        if self.db != 0 {
            exchange(&mut conn, &[b"SELECT", self.db.to_string().as_bytes()]).await?;
        }
        Ok(conn)
    }
}

async fn exchange(conn: &mut Conn, args: &[&[u8]]) -> Result<Reply, RedisError> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    conn.get_mut().write_all(&out).await?;
    read_reply(conn, 0).await
}

async fn read_line(conn: &mut Conn) -> Result<String, RedisError> {
    let mut line = Vec::new();
    let n = (&mut *conn).take(MAX_BULK as u64).read_until(b'\n', &mut line).await?;
    if n == 0 || !line.ends_with(b"\r\n") {
        return Err(RedisError::Protocol);
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| RedisError::Protocol)
}

fn read_reply(
    conn: &mut Conn,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply, RedisError>> + Send + '_>> {
    Box::pin(async move {
        if depth > MAX_DEPTH {
            return Err(RedisError::Protocol);
        }
        let line = read_line(conn).await?;
        let (kind, rest) = line.split_at_checked(1).ok_or(RedisError::Protocol)?;
        let num = || rest.parse::<i64>().map_err(|_| RedisError::Protocol);
        match kind {
            "+" => Ok(Reply::Status(rest.to_owned())),
            "-" => Err(RedisError::Server(rest.to_owned())),
            ":" => Ok(Reply::Int(num()?)),
            "$" => {
                let n = num()?;
                if n < 0 {
                    return Ok(Reply::Nil);
                }
                let n = n as usize;
                if n > MAX_BULK {
                    return Err(RedisError::Protocol);
                }
                let mut buf = vec![0u8; n + 2];
                conn.read_exact(&mut buf).await?;
                if !buf.ends_with(b"\r\n") {
                    return Err(RedisError::Protocol);
                }
                buf.truncate(n);
                Ok(Reply::Bulk(buf))
            }
            "*" => {
                let n = num()?;
                if n < 0 {
                    return Ok(Reply::Nil);
                }
                if n as usize > MAX_ARRAY {
                    return Err(RedisError::Protocol);
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_reply(conn, depth + 1).await?);
                }
                Ok(Reply::Array(items))
            }
            _ => Err(RedisError::Protocol),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let r = Redis::new("redis://127.0.0.1", Duration::from_secs(1)).unwrap();
        assert_eq!((r.addr.as_str(), r.db, r.password.is_none()), ("127.0.0.1:6379", 0, true));
        let r = Redis::new("redis://u:p%w@h:7000/3", Duration::from_secs(1)).unwrap();
        assert_eq!((r.addr.as_str(), r.db), ("h:7000", 3));
        assert_eq!(r.password, Some((Some("u".into()), "p%w".into())));
        assert!(Redis::new("rediss://h", Duration::from_secs(1)).is_err());
        assert!(Redis::new("redis://h/x", Duration::from_secs(1)).is_err());
    }
}
