//! PostgreSQL's binary COPY format, encoded straight from mapped cells into one reused buffer
//! that is handed to the connection in large chunks: no per-row allocation, no per-row message.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::record::Cell;

/// The fixed header of a binary COPY stream: signature, flags, header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// A chunk is handed over once it holds this much: large enough that the per-message cost
/// vanishes, small enough that a few in flight cost little memory.
pub const CHUNK_BYTES: usize = 256 << 10;

/// Encodes rows of one source, each followed by the batch's `fetched_at`.
#[derive(Debug)]
pub struct CopyEncoder {
    types: Vec<Type>,
    fetched_at: DateTime<Utc>,
    buffer: BytesMut,
}

impl CopyEncoder {
    /// An encoder for columns of `types`, the stream's header already written.
    pub fn new(types: Vec<Type>, fetched_at: DateTime<Utc>) -> Self {
        let mut buffer = BytesMut::with_capacity(CHUNK_BYTES + (CHUNK_BYTES >> 2));
        buffer.put_slice(HEADER);
        Self {
            types,
            fetched_at,
            buffer,
        }
    }

    /// Appends one row; on an error nothing of it stays in the stream.
    pub fn row(&mut self, cells: &[Cell<'_>]) -> Result<(), String> {
        let start = self.buffer.len();
        let written = self.write_row(cells);
        if written.is_err() {
            self.buffer.truncate(start);
        }
        written
    }

    fn write_row(&mut self, cells: &[Cell<'_>]) -> Result<(), String> {
        let fields = i16::try_from(cells.len() + 1).map_err(|_| "too many columns".to_owned())?;
        self.buffer.put_i16(fields);
        for (cell, ty) in cells.iter().zip(&self.types) {
            write_field(&mut self.buffer, cell, ty)?;
        }
        write_field(&mut self.buffer, &self.fetched_at, &Type::TIMESTAMPTZ)
    }

    /// The encoded bytes so far, once there are at least [`CHUNK_BYTES`].
    pub fn full_chunk(&mut self) -> Option<Bytes> {
        (self.buffer.len() >= CHUNK_BYTES).then(|| self.buffer.split().freeze())
    }

    /// The rest of the stream, with the trailer that ends it.
    pub fn finish(mut self) -> Bytes {
        self.buffer.put_i16(-1);
        self.buffer.freeze()
    }
}

/// One field: its length (-1 for NULL), then its binary value.
fn write_field(buffer: &mut BytesMut, value: &(dyn ToSql + Sync), ty: &Type) -> Result<(), String> {
    let at = buffer.len();
    buffer.put_i32(0);
    let length = match value
        .to_sql_checked(ty, buffer)
        .map_err(|err| format!("cannot encode as {ty}: {err}"))?
    {
        IsNull::Yes => -1,
        IsNull::No => i32::try_from(buffer.len() - at - 4)
            .map_err(|_| "value larger than PostgreSQL's 1 GB field limit".to_owned())?,
    };
    buffer[at..at + 4].copy_from_slice(&length.to_be_bytes());
    Ok(())
}
