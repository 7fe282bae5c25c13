//! Typed JSON tables over redb.

use std::path::Path;

use berth_types::{Error, Result};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The schema this build reads and writes. Bump it with a migration when a value's shape changes
/// incompatibly.
pub const SCHEMA_VERSION: u64 = 1;

/// A named table of `String → JSON`.
#[derive(Clone, Copy)]
pub struct Table(&'static str);

impl Table {
    pub const fn new(name: &'static str) -> Table {
        Table(name)
    }
    fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.0)
    }
}

const META: Table = Table::new("meta");

pub struct Store {
    db: Database,
}

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("metadata store: {e}"))
}

impl Store {
    /// Opens (creating) the store at `path` and checks its schema version.
    pub fn open(path: &Path) -> Result<Store> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                Error::conflict(format!("metadata store {} is in use by another process", path.display()))
            }
            e => db_err(e),
        })?;
        let store = Store { db };
        match store.get::<u64>(META, "schema_version")? {
            None => store.write(|tx| tx.put(META, "schema_version", &SCHEMA_VERSION))?,
            Some(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(Error::internal(format!(
                    "metadata store {} has schema {v}, this berthd reads {SCHEMA_VERSION}",
                    path.display()
                )))
            }
        }
        Ok(store)
    }

    pub fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = match tx.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        match t.get(key).map_err(db_err)? {
            Some(v) => Ok(Some(decode(table, key, v.value())?)),
            None => Ok(None),
        }
    }

    /// Every entry of `table` that decodes as `T`, in key order, and the keys of those that do not
    /// (a record written by an older version, say), each with why: for loading at start, where one
    /// bad record must not keep every other one from loading.
    pub fn list_decodable<T: DeserializeOwned>(&self, table: Table) -> Result<Decoded<T>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = match tx.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(db_err(e)),
        };
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for item in t.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            match decode(table, k.value(), v.value()) {
                Ok(x) => good.push((k.value().to_string(), x)),
                Err(e) => bad.push((k.value().to_string(), e)),
            }
        }
        Ok((good, bad))
    }

    /// Every entry of `table`, in key order.
    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = match tx.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db_err(e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            out.push((k.value().to_string(), decode(table, k.value(), v.value())?));
        }
        Ok(out)
    }

    /// Runs `f` in one write transaction, committed only when it returns Ok.
    pub fn write<R>(&self, f: impl FnOnce(&mut Txn) -> Result<R>) -> Result<R> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let mut txn = Txn { tx };
        let r = f(&mut txn)?;
        txn.tx.commit().map_err(db_err)?;
        Ok(r)
    }

    pub fn put<T: Serialize>(&self, table: Table, key: &str, value: &T) -> Result<()> {
        self.write(|tx| tx.put(table, key, value))
    }

    pub fn delete(&self, table: Table, key: &str) -> Result<()> {
        self.write(|tx| tx.delete(table, key))
    }
}

fn decode<T: DeserializeOwned>(table: Table, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::internal(format!("metadata store: corrupt {}/{key}: {e}", table.0)))
}

/// What [`Store::list_decodable`] found: the entries that decode, and the keys of those that do
/// not, each with why.
pub type Decoded<T> = (Vec<(String, T)>, Vec<(String, Error)>);

/// A write transaction.
pub struct Txn {
    tx: redb::WriteTransaction,
}

impl Txn {
    pub fn put<T: Serialize>(&mut self, table: Table, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(db_err)?;
        let mut t = self.tx.open_table(table.def()).map_err(db_err)?;
        t.insert(key, bytes.as_slice()).map_err(db_err)?;
        Ok(())
    }

    pub fn delete(&mut self, table: Table, key: &str) -> Result<()> {
        let mut t = self.tx.open_table(table.def()).map_err(db_err)?;
        t.remove(key).map_err(db_err)?;
        Ok(())
    }

    pub fn get<T: DeserializeOwned>(&mut self, table: Table, key: &str) -> Result<Option<T>> {
        let t = self.tx.open_table(table.def()).map_err(db_err)?;
        let v = t.get(key).map_err(db_err)?;
        match v {
            Some(v) => Ok(Some(decode(table, key, v.value())?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Table = Table::new("things");

    #[test]
    fn survives_reopen_and_rolls_back_on_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("db");
        {
            let s = Store::open(&p).unwrap();
            s.put(T, "a", &vec![1, 2]).unwrap();
            let r: Result<()> = s.write(|tx| {
                tx.put(T, "b", &1)?;
                Err(Error::invalid("nope"))
            });
            assert!(r.is_err());
            assert!(Store::open(&p).is_err(), "second open must be refused");
        }
        let s = Store::open(&p).unwrap();
        assert_eq!(s.get::<Vec<i32>>(T, "a").unwrap(), Some(vec![1, 2]));
        assert_eq!(s.get::<i32>(T, "b").unwrap(), None);
        assert_eq!(s.list::<Vec<i32>>(T).unwrap().len(), 1);
        s.delete(T, "a").unwrap();
        assert!(s.list::<Vec<i32>>(T).unwrap().is_empty());
        assert!(s.list::<i32>(Table::new("never")).unwrap().is_empty());
    }

    #[test]
    fn undecodable_entries_are_set_apart_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("db")).unwrap();
        s.put(T, "a", &1).unwrap();
        s.put(T, "b", &"not a number").unwrap();
        s.put(T, "c", &3).unwrap();
        assert!(s.list::<i32>(T).is_err());
        let (good, bad) = s.list_decodable::<i32>(T).unwrap();
        assert_eq!(good, vec![("a".to_string(), 1), ("c".to_string(), 3)]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "b");
        assert!(bad[0].1.message.contains("corrupt things/b"), "{}", bad[0].1.message);
    }
}
