//! The two messages of PostgreSQL's `pgoutput` plugin a WAL relay needs, decoded: a
//! **Relation** (a table's columns, sent before the first change of that table on a
//! connection, and again when the table changes), and an **Insert** (one new row, its values
//! in the server's text output). Begin and Commit frame each transaction; the replication
//! client reads those itself. Every other message (updates, deletes, truncates, types,
//! origins) is [`Change::Other`]: the relay publishes inserts only, as Debezium's Outbox
//! Event Router does.
//!
//! The format is "Logical Replication Message Formats" in PostgreSQL's manual, protocol
//! version 1: no transaction id inside a message, since no transaction is streamed before it
//! commits.

use bytes::{Buf, Bytes};

/// A table as a Relation message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The table's OID: the key of the Inserts that follow.
    pub id: u32,
    pub namespace: String,
    pub name: String,
    /// Column names, in the order of an Insert's values.
    pub columns: Vec<String>,
}

/// One column's value in an Insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    /// The server's text output of the value (`jsonb` as JSON text, `timestamptz` in the
    /// session's `DateStyle`).
    Text(Bytes),
    /// A TOASTed value that did not change; an Insert never has one, but the format allows it.
    Unchanged,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Relation(Relation),
    Insert {
        relation: u32,
        values: Vec<Value>,
    },
    /// A message the relay has no use for, by its one-byte tag.
    Other(u8),
}

/// A message that does not follow the format: the stream is not what the relay thinks it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("pgoutput message ends early (reading {0})")]
    Truncated(&'static str),
    #[error("pgoutput {0} holds a string that is not UTF-8 or has no terminating NUL")]
    BadString(&'static str),
    #[error("pgoutput Insert has tuple tag {0:?}, expected 'N'")]
    BadTupleTag(char),
    #[error("pgoutput column kind {0:?} is none of n, u, t (binary values are not asked for)")]
    BadColumnKind(char),
}

/// Decodes one message (the `data` of an XLogData frame).
pub fn decode(mut message: Bytes) -> Result<Change, DecodeError> {
    let tag = take_u8(&mut message, "message tag")?;
    match tag {
        b'R' => relation(&mut message).map(Change::Relation),
        b'I' => {
            let relation = take_u32(&mut message, "Insert relation")?;
            let tuple = take_u8(&mut message, "Insert tuple tag")?;
            if tuple != b'N' {
                return Err(DecodeError::BadTupleTag(tuple as char));
            }
            Ok(Change::Insert {
                relation,
                values: tuple_data(&mut message)?,
            })
        }
        other => Ok(Change::Other(other)),
    }
}

fn relation(message: &mut Bytes) -> Result<Relation, DecodeError> {
    let id = take_u32(message, "Relation id")?;
    let namespace = take_string(message, "Relation namespace")?;
    let name = take_string(message, "Relation name")?;
    let _replica_identity = take_u8(message, "Relation replica identity")?;
    let count = take_u16(message, "Relation column count")?;
    let mut columns = Vec::with_capacity(count.into());
    for _ in 0..count {
        let _flags = take_u8(message, "column flags")?;
        columns.push(take_string(message, "column name")?);
        let _type_oid = take_u32(message, "column type")?;
        let _type_modifier = take_u32(message, "column type modifier")?;
    }
    Ok(Relation {
        id,
        namespace,
        name,
        columns,
    })
}

fn tuple_data(message: &mut Bytes) -> Result<Vec<Value>, DecodeError> {
    let count = take_u16(message, "tuple column count")?;
    let mut values = Vec::with_capacity(count.into());
    for _ in 0..count {
        let value = match take_u8(message, "column kind")? {
            b'n' => Value::Null,
            b'u' => Value::Unchanged,
            b't' => {
                let len = take_u32(message, "value length")? as usize;
                if message.remaining() < len {
                    return Err(DecodeError::Truncated("value"));
                }
                Value::Text(message.split_to(len))
            }
            other => return Err(DecodeError::BadColumnKind(other as char)),
        };
        values.push(value);
    }
    Ok(values)
}

fn take_u8(message: &mut Bytes, what: &'static str) -> Result<u8, DecodeError> {
    message
        .try_get_u8()
        .map_err(|_| DecodeError::Truncated(what))
}

fn take_u16(message: &mut Bytes, what: &'static str) -> Result<u16, DecodeError> {
    message
        .try_get_u16()
        .map_err(|_| DecodeError::Truncated(what))
}

fn take_u32(message: &mut Bytes, what: &'static str) -> Result<u32, DecodeError> {
    message
        .try_get_u32()
        .map_err(|_| DecodeError::Truncated(what))
}

fn take_string(message: &mut Bytes, what: &'static str) -> Result<String, DecodeError> {
    let end = message
        .iter()
        .position(|b| *b == 0)
        .ok_or(DecodeError::BadString(what))?;
    let text = message.split_to(end);
    message.advance(1);
    String::from_utf8(text.to_vec()).map_err(|_| DecodeError::BadString(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn relation_message(id: u32, columns: &[&str]) -> Bytes {
        let mut m = bytes::BytesMut::new();
        m.put_u8(b'R');
        m.put_u32(id);
        m.put_slice(b"public\0outbox\0");
        m.put_u8(b'd');
        m.put_u16(columns.len() as u16);
        for c in columns {
            m.put_u8(1);
            m.put_slice(c.as_bytes());
            m.put_u8(0);
            m.put_u32(25);
            m.put_i32(-1);
        }
        m.freeze()
    }

    fn insert_message(id: u32, values: &[Option<&str>]) -> Bytes {
        let mut m = bytes::BytesMut::new();
        m.put_u8(b'I');
        m.put_u32(id);
        m.put_u8(b'N');
        m.put_u16(values.len() as u16);
        for v in values {
            match v {
                None => m.put_u8(b'n'),
                Some(v) => {
                    m.put_u8(b't');
                    m.put_u32(v.len() as u32);
                    m.put_slice(v.as_bytes());
                }
            }
        }
        m.freeze()
    }

    #[test]
    fn a_relation_names_its_columns_in_order() {
        let decoded = decode(relation_message(16384, &["id", "aggregatetype", "payload"]));
        assert_eq!(
            decoded,
            Ok(Change::Relation(Relation {
                id: 16384,
                namespace: "public".into(),
                name: "outbox".into(),
                columns: vec!["id".into(), "aggregatetype".into(), "payload".into()],
            }))
        );
    }

    #[test]
    fn an_insert_keeps_text_nulls_and_empty_strings_apart() {
        let payload = r#"{"sku": "KEYBOARD-01", "note": "ünïcode"}"#;
        let decoded = decode(insert_message(7, &[Some(payload), None, Some("")]));
        assert_eq!(
            decoded,
            Ok(Change::Insert {
                relation: 7,
                values: vec![
                    Value::Text(Bytes::from(payload)),
                    Value::Null,
                    Value::Text(Bytes::new()),
                ],
            })
        );
    }

    #[test]
    fn other_messages_are_named_not_decoded() {
        assert_eq!(
            decode(Bytes::from_static(b"D\0\0\0\x07K")),
            Ok(Change::Other(b'D'))
        );
        assert_eq!(decode(Bytes::from_static(b"T")), Ok(Change::Other(b'T')));
    }

    #[test]
    fn every_cut_of_a_message_is_an_error_never_a_panic() {
        for message in [
            relation_message(1, &["id", "payload"]),
            insert_message(1, &[Some("abc"), None, Some("{}")]),
        ] {
            assert!(decode(message.clone()).is_ok());
            for cut in 0..message.len() {
                assert!(
                    decode(message.slice(..cut)).is_err(),
                    "a message cut at {cut} of {} decoded",
                    message.len()
                );
            }
        }
    }

    #[test]
    fn a_binary_value_or_an_old_tuple_is_refused() {
        let mut binary = insert_message(1, &[Some("x")]).to_vec();
        binary[8] = b'b';
        assert_eq!(
            decode(Bytes::from(binary)),
            Err(DecodeError::BadColumnKind('b'))
        );
        let mut old = insert_message(1, &[Some("x")]).to_vec();
        old[5] = b'O';
        assert_eq!(decode(Bytes::from(old)), Err(DecodeError::BadTupleTag('O')));
    }
}
