//! CSV files as records: the header row names the columns, and each row after it becomes a
//! JSON object of its values by those names (`{"MRN": "123", "Last Name": "Doe"}`), which the
//! record type's map (`mapping`) reads with JSONPaths as it reads a vendor's JSON
//! (`$.MRN`, `$['Last Name']`). Every value is text; a map's `as` or `date` makes it more.
//!
//! Files come from outside: the caller bounds the file's size, this the columns and a row's
//! width; a row that cannot be read (a different number of values than the header, bytes not
//! in the file's encoding) is refused alone, with its line, and the rest go on.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Read;
use std::rc::Rc;

/// How a source writes its CSV files.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    #[default]
    #[serde(alias = "utf8")]
    Utf8,
    /// ISO 8859-1, which older exports still write.
    #[serde(alias = "iso-8859-1")]
    Latin1,
}

/// At most this many columns in a file.
pub const MAX_COLUMNS: usize = 1_000;

/// A CSV file being read, row by row.
pub struct Rows<R: Read> {
    reader: csv::Reader<Counting<R>>,
    breaks: Rc<RefCell<Breaks>>,
    header: Vec<String>,
    encoding: Encoding,
    row: csv::ByteRecord,
}

/// One row: the line it starts on (1-based, the header being line 1), and its record or why
/// it could not be read.
pub type Row = (u64, Result<Value, String>);

impl<R: Read> Rows<R> {
    /// Open `input` and read its header: an error (the file refused whole) when there is none,
    /// or a column has no name or the name of another.
    pub fn open(input: R, delimiter: u8, encoding: Encoding) -> Result<Rows<R>, String> {
        let breaks = Rc::new(RefCell::new(Breaks::default()));
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            // LF ends a row (a CR before it is trimmed with the value's spaces): csv's own CRLF
            // handling counts a row's line one short
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(Counting {
                inner: input,
                read: 0,
                breaks: breaks.clone(),
            });
        let mut first = csv::ByteRecord::new();
        if !reader
            .read_byte_record(&mut first)
            .map_err(|e| e.to_string())?
        {
            return Err("the file is empty: no header row".into());
        }
        if first.len() > MAX_COLUMNS {
            return Err(format!("more than {MAX_COLUMNS} columns"));
        }
        let mut header = Vec::with_capacity(first.len());
        for (i, name) in first.iter().enumerate() {
            let name = text(name, encoding).map_err(|e| format!("the header: {e}"))?;
            let name = name.trim_start_matches('\u{feff}').to_string();
            if name.is_empty() {
                return Err(format!("the header's column {} has no name", i + 1));
            }
            if header.contains(&name) {
                return Err(format!("the header names the column '{name}' twice"));
            }
            header.push(name);
        }
        Ok(Rows {
            reader,
            breaks,
            header,
            encoding,
            row: csv::ByteRecord::new(),
        })
    }

    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The next row; `None` at the end of the file, an error when the file cannot be read on.
    pub fn next_row(&mut self) -> Result<Option<Row>, String> {
        loop {
            if !self
                .reader
                .read_byte_record(&mut self.row)
                .map_err(|e| e.to_string())?
            {
                return Ok(None);
            }
            // a blank line is no record (exports often end with one)
            if self.row.len() == 1 && self.row[0].is_empty() {
                continue;
            }
            // the row's first line: its last line (the line breaks before the last byte it
            // took) less the line breaks inside its quoted values. (The reader's record
            // positions count the blank lines it skips before a row as the row's.)
            let end = self.reader.position().byte();
            let last = self.breaks.borrow_mut().before(end.saturating_sub(1)) + 1;
            let inside = self.row.as_slice().iter().filter(|&&b| b == b'\n').count() as u64;
            let line = last.saturating_sub(inside).max(1);
            return Ok(Some((line, self.record())));
        }
    }

    fn record(&self) -> Result<Value, String> {
        if self.row.len() != self.header.len() {
            return Err(format!(
                "{} values where the header names {} columns",
                self.row.len(),
                self.header.len()
            ));
        }
        let mut object = Map::with_capacity(self.header.len());
        for (name, value) in self.header.iter().zip(self.row.iter()) {
            let value = text(value, self.encoding).map_err(|e| format!("column '{name}': {e}"))?;
            object.insert(name.clone(), Value::String(value));
        }
        Ok(Value::Object(object))
    }
}

/// Where the line breaks of the input are, as far as it has been read: those before the row
/// being read are only counted.
#[derive(Default)]
struct Breaks {
    counted: u64,
    at: VecDeque<u64>,
}

impl Breaks {
    /// How many line breaks there are before byte `offset` (which is past every break dropped).
    fn before(&mut self, offset: u64) -> u64 {
        while self.at.front().is_some_and(|&b| b < offset) {
            self.at.pop_front();
            self.counted += 1;
        }
        self.counted
    }
}

/// The input, its line breaks noted as it is read.
pub struct Counting<R> {
    inner: R,
    read: u64,
    breaks: Rc<RefCell<Breaks>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut breaks = self.breaks.borrow_mut();
        for (i, _) in buf[..n].iter().enumerate().filter(|(_, b)| **b == b'\n') {
            breaks.at.push_back(self.read + i as u64);
        }
        self.read += n as u64;
        Ok(n)
    }
}

fn text(bytes: &[u8], encoding: Encoding) -> Result<String, String> {
    match encoding {
        Encoding::Utf8 => std::str::from_utf8(bytes).map(str::to_string).map_err(|_| {
            "not UTF-8 (an export in ISO 8859-1 says \"encoding\": \"latin1\")".to_string()
        }),
        Encoding::Latin1 => Ok(bytes.iter().map(|&b| b as char).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn all(text: &[u8], encoding: Encoding) -> Result<Vec<Row>, String> {
        let mut rows = Rows::open(text, b',', encoding)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next_row()? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn rows_become_objects_by_the_header_with_their_lines() {
        let file = "\u{feff}MRN,Last Name,Note\r\n 1 ,Doe,\"two\nlines\"\n\n2,O'Brien,\"a, b\"\n";
        let rows = all(file.as_bytes(), Encoding::Utf8).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, 2);
        assert_eq!(
            rows[0].1.as_ref().unwrap(),
            &json!({"MRN": "1", "Last Name": "Doe", "Note": "two\nlines"})
        );
        assert_eq!(rows[1].0, 5);
        assert_eq!(rows[1].1.as_ref().unwrap()["Note"], "a, b");
        // the last row without its line break, CRLF rows
        let rows = all(b"a,b\r\n1,2\r\n\r\n3,4", Encoding::Utf8).unwrap();
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 4]);
        assert_eq!(rows[1].1.as_ref().unwrap()["b"], "4");
    }

    #[test]
    fn a_bad_row_is_refused_alone() {
        let rows = all(b"a,b\n1,2\n1,2,3\n\xff,4\n5,6\n", Encoding::Utf8).unwrap();
        assert_eq!(rows.len(), 4);
        assert!(rows[1].1.as_ref().unwrap_err().contains("3 values"));
        assert!(rows[2].1.as_ref().unwrap_err().contains("not UTF-8"));
        assert!(rows[3].1.is_ok());
        let rows = all(b"a,b\n\xe9,4\n", Encoding::Latin1).unwrap();
        assert_eq!(rows[0].1.as_ref().unwrap()["a"], "\u{e9}");
    }

    #[test]
    fn a_file_without_a_usable_header_is_refused_whole() {
        assert!(all(b"", Encoding::Utf8).unwrap_err().contains("empty"));
        assert!(
            all(b"a,,c\n", Encoding::Utf8)
                .unwrap_err()
                .contains("column 2")
        );
        assert!(
            all(b"a,b,a\n", Encoding::Utf8)
                .unwrap_err()
                .contains("twice")
        );
        let wide = vec!["c"; MAX_COLUMNS + 1].join(",");
        assert!(all(wide.as_bytes(), Encoding::Utf8).is_err());
    }

    proptest! {
        // any bytes: rows or a reason, never a panic; every row read is an object of the
        // header's columns
        #[test]
        fn hostile_bytes_are_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(rows) = all(&bytes, Encoding::Utf8) {
                for (_, r) in rows {
                    if let Ok(Value::Object(o)) = r {
                        prop_assert!(o.len() <= MAX_COLUMNS);
                    }
                }
            }
        }
    }
}
