//! A minimal Redis client: RESP2 requests and replies over one TCP connection, with
//! pipelining (queue many commands, write them in one go, then read every reply).
//!
//! Written here rather than taken from a crate because the benchmark needs exactly this and
//! nothing else, and because it lets replies stay in the receive buffer: a reply's bulk strings
//! are byte ranges into it, so reading a batch allocates nothing once the buffers have grown.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::io;
use crate::{BenchError, Result};

/// Deepest reply nesting accepted (the benchmark's replies are at most arrays of bulk strings).
const MAX_DEPTH: usize = 4;
/// Largest bulk string or array accepted, so a corrupt length cannot make us allocate wildly.
const MAX_LEN: usize = 512 << 20;
/// Bytes reserved before each socket read.
const READ_CHUNK: usize = 256 << 10;

/// One parsed reply element. Bulk strings are `(start, len)` ranges into the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// A nil bulk string or nil array.
    Nil,
    /// A bulk string.
    Bulk(usize, usize),
    /// An integer.
    Int(i64),
    /// A simple string (`+OK`), as a range.
    Status(usize, usize),
    /// An array header; its elements follow as the next items.
    Array(usize),
}

/// An error reply, or a protocol problem.
fn redis_err(what: &str, msg: impl Into<String>) -> BenchError {
    BenchError::other(format!("redis {what}"), msg.into())
}

/// Parses one reply at `pos`: `Ok(Some(end))` when complete, `Ok(None)` when more bytes are
/// needed. Error replies become `Err` carrying the server's message.
fn parse(buf: &[u8], pos: usize, items: &mut Vec<Item>, depth: usize) -> Result<Option<usize>> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(nl) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = &buf[pos + 1..pos + nl];
    let after = pos + nl + 2;
    let int = || -> Result<i64> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| redis_err("reply", format!("bad integer {line:?}")))
    };
    match kind {
        b'+' => {
            items.push(Item::Status(pos + 1, nl - 1));
            Ok(Some(after))
        }
        b'-' => Err(redis_err("error reply", String::from_utf8_lossy(line))),
        b':' => {
            items.push(Item::Int(int()?));
            Ok(Some(after))
        }
        b'$' => {
            let Some(n) = length(int()?, MAX_LEN, items)? else {
                return Ok(Some(after));
            };
            if buf.len() < after + n + 2 {
                return Ok(None);
            }
            items.push(Item::Bulk(after, n));
            Ok(Some(after + n + 2))
        }
        b'*' => {
            let limit = if depth < MAX_DEPTH { MAX_LEN } else { 0 };
            let Some(n) = length(int()?, limit, items)? else {
                return Ok(Some(after));
            };
            items.push(Item::Array(n));
            let mut p = after;
            for _ in 0..n {
                match parse(buf, p, items, depth + 1)? {
                    Some(end) => p = end,
                    None => return Ok(None),
                }
            }
            Ok(Some(p))
        }
        other => Err(redis_err(
            "reply",
            format!("unexpected type byte {other:#04x} at offset {pos}"),
        )),
    }
}

/// The length of a bulk string or array header: None (and a `Nil` item) for the null reply
/// (-1); an error past `limit` (bounded before anything is allocated for it).
fn length(n: i64, limit: usize, items: &mut Vec<Item>) -> Result<Option<usize>> {
    if n < 0 {
        items.push(Item::Nil);
        return Ok(None);
    }
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= limit)
        .map(Some)
        .ok_or_else(|| redis_err("reply", format!("length {n} over the limit of {limit}")))
}

/// Reads what the server sent next into `buf`, `what` saying what it is; fails when the
/// server closed the connection.
async fn read_more(rd: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>, what: &str) -> Result<()> {
    buf.reserve(READ_CHUNK);
    let n = rd
        .read_buf(buf)
        .await
        .map_err(io(format!("reading {what}")))?;
    if n == 0 {
        return Err(redis_err(
            "connection",
            format!("closed while reading {what}"),
        ));
    }
    Ok(())
}

/// One connection to a Redis server.
#[derive(Debug)]
pub(crate) struct RespConn {
    stream: TcpStream,
    out: Vec<u8>,
    queued: usize,
    buf: Vec<u8>,
    items: Vec<Item>,
    /// Index into `items` of each top-level reply of the last batch.
    tops: Vec<usize>,
}

impl RespConn {
    /// Connects (with `TCP_NODELAY`, as every Redis client sets it).
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(io(format!("connecting to redis at {addr}")))?;
        stream
            .set_nodelay(true)
            .map_err(io("setting TCP_NODELAY"))?;
        Ok(Self {
            stream,
            out: Vec::with_capacity(64 << 10),
            queued: 0,
            buf: Vec::with_capacity(READ_CHUNK),
            items: Vec::new(),
            tops: Vec::new(),
        })
    }

    /// Starts queuing a command of `args` arguments (the command name included); follow with
    /// exactly that many [`Self::arg`] calls.
    pub(crate) fn begin(&mut self, args: usize) {
        self.out.push(b'*');
        push_decimal(&mut self.out, args);
        self.out.extend_from_slice(b"\r\n");
        self.queued += 1;
    }

    /// Adds one argument to the command being queued.
    pub(crate) fn arg(&mut self, a: &[u8]) {
        self.out.push(b'$');
        push_decimal(&mut self.out, a.len());
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(a);
        self.out.extend_from_slice(b"\r\n");
    }

    /// Queues a whole command.
    pub(crate) fn cmd(&mut self, args: &[&[u8]]) {
        self.begin(args.len());
        for a in args {
            self.arg(a);
        }
    }

    /// Sends every queued command and reads all their replies (an error reply fails the
    /// batch). The replies stay readable through [`Self::reply`] until the next batch.
    pub(crate) async fn exec(&mut self) -> Result<()> {
        let expected = std::mem::take(&mut self.queued);
        self.stream
            .write_all(&self.out)
            .await
            .map_err(io("writing to redis"))?;
        self.out.clear();
        self.buf.clear();
        self.items.clear();
        self.tops.clear();
        let mut pos = 0;
        while self.tops.len() < expected {
            let mark = self.items.len();
            match parse(&self.buf, pos, &mut self.items, 0)? {
                Some(end) => {
                    self.tops.push(mark);
                    pos = end;
                    continue;
                }
                None => self.items.truncate(mark),
            }
            read_more(&mut self.stream, &mut self.buf, "from redis").await?;
        }
        Ok(())
    }

    /// Number of replies of the last batch.
    pub(crate) fn replies(&self) -> usize {
        self.tops.len()
    }

    /// Reply `k` of the last batch: its first item, and the items of its elements if it is
    /// an array.
    pub(crate) fn reply(&self, k: usize) -> (Item, &[Item]) {
        let i = self.tops[k];
        let end = self.tops.get(k + 1).copied().unwrap_or(self.items.len());
        (self.items[i], &self.items[i + 1..end])
    }

    /// The bytes of a bulk or status item (empty for others).
    pub(crate) fn bytes(&self, item: Item) -> &[u8] {
        match item {
            Item::Bulk(s, n) | Item::Status(s, n) => &self.buf[s..s + n],
            _ => &[],
        }
    }

    /// Runs one command and returns its reply as bytes (status text, bulk string, or an
    /// integer in decimal).
    pub(crate) async fn query(&mut self, args: &[&[u8]]) -> Result<Vec<u8>> {
        self.cmd(args);
        self.exec().await?;
        let (item, _) = self.reply(0);
        Ok(match item {
            Item::Int(x) => x.to_string().into_bytes(),
            other => self.bytes(other).to_vec(),
        })
    }

    /// Writes `data` (a stream of `commands` complete RESP commands) while reading the replies
    /// concurrently, the way `redis-cli --pipe` does mass insertion. Fails on any error reply.
    pub(crate) async fn pipe(self, data: &[u8], commands: u64) -> Result<()> {
        let (mut rd, mut wr) = self.stream.into_split();
        let write = async move {
            wr.write_all(data)
                .await
                .map_err(io("writing the mass insertion to redis"))?;
            wr.flush()
                .await
                .map_err(io("flushing the mass insertion"))?;
            Ok::<_, BenchError>(wr)
        };
        let read = async move {
            let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
            let mut items = Vec::new();
            let mut done = 0u64;
            let mut pos = 0;
            while done < commands {
                items.clear();
                match parse(&buf, pos, &mut items, 0)? {
                    Some(end) => {
                        pos = end;
                        done += 1;
                        continue;
                    }
                    None => {
                        buf.drain(..pos);
                        pos = 0;
                    }
                }
                read_more(&mut rd, &mut buf, "mass insertion replies").await?;
            }
            Ok(())
        };
        let (w, r) = tokio::join!(write, read);
        w?;
        r
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends one complete RESP command to `out` (for mass-insertion streams).
pub(crate) fn encode_cmd(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        push_decimal(out, a.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(buf: &[u8]) -> Result<Option<(usize, Vec<Item>)>> {
        let mut items = Vec::new();
        Ok(parse(buf, 0, &mut items, 0)?.map(|end| (end, items)))
    }

    #[test]
    fn parses_every_reply_type_and_waits_for_more() {
        let r = b"*3\r\n$3\r\nabc\r\n$-1\r\n:42\r\n+OK\r\n";
        let (end, items) = parse_all(r).unwrap().unwrap();
        assert_eq!(end, r.len() - 5);
        assert_eq!(
            items,
            [Item::Array(3), Item::Bulk(8, 3), Item::Nil, Item::Int(42)]
        );
        for cut in 0..end {
            assert!(parse_all(&r[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let err = parse_all(b"-LOADING Redis is loading\r\n").unwrap_err();
        assert!(err.to_string().contains("LOADING"), "{err}");
        assert!(parse_all(b"?\r\n").is_err());
        assert!(parse_all(b"$99999999999\r\n").is_err());
        let deep = b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n";
        assert!(parse_all(deep).is_err());
    }

    #[test]
    fn commands_are_encoded_as_resp_arrays() {
        let mut out = Vec::new();
        encode_cmd(&mut out, &[b"SET", b"k", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let mut d = Vec::new();
        push_decimal(&mut d, 1234567);
        push_decimal(&mut d, 0);
        assert_eq!(d, b"12345670");
    }
}
