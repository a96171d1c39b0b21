//! The files of one type being written: ndjson, a new file every `per_file` resources, each
//! resource once when the type is read in several queries that may overlap.

use super::files::ExportFiles;
use super::run::{Output, RunError};
use crate::store::versions::Version;
use std::collections::HashSet;
use std::io::Write;

pub struct Out<'a> {
    files: &'a dyn ExportFiles,
    job: &'a str,
    rtype: String,
    per_file: u64,
    /// The files closed, in order (`<type>-<n>.ndjson`).
    done: Vec<Output>,
    open: Option<(Box<dyn Write + Send>, Output)>,
    /// Ids written, when the type is read in several queries that may overlap.
    pub seen: Option<HashSet<String>>,
    /// `_elements`: the top-level elements kept.
    pub elements: Option<Vec<String>>,
}

impl<'a> Out<'a> {
    pub fn new(files: &'a dyn ExportFiles, job: &'a str, rtype: &str, per_file: u64) -> Self {
        Out {
            files,
            job,
            rtype: rtype.to_string(),
            per_file,
            done: Vec::new(),
            open: None,
            seen: None,
            elements: None,
        }
    }

    /// Write `v` (unless written already); whether it was.
    pub fn write(&mut self, v: &Version) -> Result<bool, RunError> {
        if let Some(seen) = self.seen.as_mut()
            && !seen.insert(v.id.clone())
        {
            return Ok(false);
        }
        if self
            .open
            .as_ref()
            .is_none_or(|(_, o)| o.count >= self.per_file)
        {
            self.close_file()?;
            let name = format!("{}-{}.ndjson", self.rtype, self.done.len() + 1);
            let w = self.files.create(self.job, &name)?;
            let o = Output {
                rtype: self.rtype.clone(),
                name,
                count: 0,
                deleted: false,
            };
            self.open = Some((w, o));
        }
        let (w, o) = self.open.as_mut().expect("a file is open");
        match &self.elements {
            // the stored JSON is one line already (serde_json writes no newlines)
            None => w.write_all(v.content.as_bytes())?,
            Some(wanted) => {
                let mut resource = v.json();
                crate::fhir::subset::elements(&mut resource, wanted);
                serde_json::to_writer(&mut *w, &resource).map_err(std::io::Error::from)?;
            }
        }
        w.write_all(b"\n")?;
        o.count += 1;
        Ok(true)
    }

    fn close_file(&mut self) -> Result<(), RunError> {
        if let Some((mut w, o)) = self.open.take() {
            w.flush()?;
            self.done.push(o);
        }
        Ok(())
    }

    /// Flush the last file; the files written.
    pub fn close(mut self) -> Result<Vec<Output>, RunError> {
        self.close_file()?;
        Ok(self.done)
    }
}
