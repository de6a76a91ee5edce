//! Result rows.

use std::sync::Arc;

use postgres_types::{FromSql, Type};

use super::codec::DataRow;
use super::error::PgError;

/// One row of an extended-protocol query, in binary format. Owns its bytes (shared with the
/// read buffer chunk it arrived in, never copied).
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[Type]>,
    data: DataRow,
}

impl Row {
    /// The reader has checked that the row has as many values as the statement has columns.
    pub(crate) fn new(columns: Arc<[Type]>, data: DataRow) -> Row {
        Row { columns, data }
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The PostgreSQL type of every column, as the statement's description gave them.
    pub fn columns(&self) -> &[Type] {
        &self.columns
    }

    /// Column `idx` as `T`, type-checked first. NULL reads as `None` through `Option<T>` and is
    /// an error for any other `T`.
    pub fn get<'a, T: FromSql<'a>>(&'a self, idx: usize) -> Result<T, PgError> {
        let ty = self.columns.get(idx).ok_or_else(|| {
            PgError::Protocol(format!(
                "column {idx} out of range: the row has {}",
                self.columns.len()
            ))
        })?;
        // Checked before decoding: some FromSql impls assume a matching type.
        if !T::accepts(ty) {
            return Err(PgError::Protocol(format!(
                "column {idx} is {ty}, which cannot be read as {}",
                std::any::type_name::<T>()
            )));
        }
        T::from_sql_nullable(ty, self.data.raw(idx))
            .map_err(|e| PgError::Protocol(format!("column {idx} ({ty}): {e}")))
    }
}

/// A simple-protocol row: every value in text form.
pub(crate) fn text_values(data: &DataRow) -> Result<Vec<Option<String>>, PgError> {
    (0..data.len())
        .map(|i| {
            data.raw(i)
                .map(|raw| {
                    String::from_utf8(raw.to_vec())
                        .map_err(|_| PgError::Protocol(format!("column {i} is not UTF-8 text")))
                })
                .transpose()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::codec::tests::data_row;
    use super::super::codec::{next_message, Backend};
    use super::*;
    use bytes::BytesMut;

    fn raw_row(cols: &[Option<&[u8]>]) -> DataRow {
        let mut buf = BytesMut::from(&data_row(cols)[..]);
        match next_message(&mut buf) {
            Ok(Some(Backend::DataRow(r))) => r,
            _ => panic!("not a data row"),
        }
    }

    fn row() -> Row {
        let cols: Arc<[Type]> = vec![Type::INT8, Type::TEXT, Type::BOOL, Type::INT4].into();
        Row::new(
            cols,
            raw_row(&[
                Some(&42i64.to_be_bytes()),
                Some(b"lot"),
                None,
                Some(&[0, 0]), // an int4 with two bytes: corrupt
            ]),
        )
    }

    #[test]
    fn reads_typed_values_and_nulls() {
        let r = row();
        assert_eq!(r.len(), 4);
        assert_eq!(r.get::<i64>(0).unwrap(), 42);
        assert_eq!(r.get::<&str>(1).unwrap(), "lot");
        assert_eq!(r.get::<String>(1).unwrap(), "lot");
        assert_eq!(r.get::<Option<bool>>(2).unwrap(), None);
        assert_eq!(r.get::<Option<i64>>(0).unwrap(), Some(42));
    }

    #[test]
    fn mismatches_are_protocol_errors() {
        let r = row();
        assert!(matches!(r.get::<i32>(0), Err(PgError::Protocol(m)) if m.contains("int8")));
        assert!(matches!(r.get::<i64>(1), Err(PgError::Protocol(_))));
        assert!(
            matches!(r.get::<bool>(2), Err(PgError::Protocol(_))),
            "NULL into bool"
        );
        assert!(
            matches!(r.get::<i32>(3), Err(PgError::Protocol(_))),
            "bad length"
        );
        assert!(matches!(r.get::<i64>(9), Err(PgError::Protocol(_))));
        assert!(matches!(r.get::<Vec<i64>>(0), Err(PgError::Protocol(_))));
    }

    #[test]
    fn text_rows() {
        let d = raw_row(&[Some(b"1"), None, Some(b"x y")]);
        let v = text_values(&d).unwrap();
        assert_eq!(
            v,
            vec![Some("1".to_string()), None, Some("x y".to_string())]
        );
        assert!(text_values(&raw_row(&[Some(&[0xff])])).is_err());
    }
}
